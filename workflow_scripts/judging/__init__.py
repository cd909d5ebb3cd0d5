"""Judging answers for alignment and coherence (docs/methods.md, Judging).

- `logprob`: pure scoring of a judge's next-token distribution (and of text replies);
- `tasks`: what to judge: one task per (metric, question, answer), keyed by content;
- `cache`: append-only JSONL cache, one file per job, so nothing is paid for twice;
- `openai_judge`: any OpenAI-compatible endpoint, async, retried, budgeted, accounted;
- `local_judge`: a transformers model scoring every candidate 0..100 in one pass;
- `server`: the lifecycle of a self-served (vLLM) judge on the job's GPU;
- `run`: one judge job: samples + questions in, judged table and summary out;
- `estimate`: a dry-run count of requests and cost for a whole grid.
"""
