"""The local judge (all 0..100 candidates in one pass) and one judge job end to end
through the local backend, on a tiny random Llama with SmolLM2's digit-splitting
tokenizer (fast); the real SmolLM2 runs in the e2e test at the end."""

from __future__ import annotations

import json

import polars as pl
import pytest
import torch

from tests.judge_support import sample_rows, save_tiny_judge, write_samples, write_short_questions
from workflow_scripts.core.io_utils import InputError
from workflow_scripts.core.schema import JUDGED_SCHEMA
from workflow_scripts.judging.local_judge import NUMBER_CANDIDATES, LocalJudge
from workflow_scripts.judging.logprob import (
    CODE,
    REFUSAL,
    UNPARSEABLE,
    judge_distribution,
    missing_reason,
)
from workflow_scripts.judging.run import judge_samples, table_summary
from workflow_scripts.judging.settings import JudgeSettings


@pytest.fixture(scope="module")
def tiny_judge_dir(tmp_path_factory):
    return save_tiny_judge(tmp_path_factory.mktemp("tiny_judge"))


@pytest.fixture(scope="module")
def tiny_judge(tiny_judge_dir):
    return LocalJudge(tiny_judge_dir, "tiny", batch_size=4, device="cpu")


def _one_at_a_time(judge: LocalJudge, prompt: str, candidate: str) -> float:
    """P(candidate) from a plain forward pass of prompt + candidate, no tree, no batch."""
    ids = judge.prompt_ids(prompt)
    cont = judge.tokenizer(candidate, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logp = torch.log_softmax(judge.model(torch.tensor([ids + cont])).logits.float(), -1)[0]
    total = sum(logp[len(ids) - 1 + i, tok].item() for i, tok in enumerate(cont))
    p = torch.tensor(total).exp().item()
    if candidate.isdigit():  # ... and then no further digit
        p *= 1 - logp[len(ids) - 1 + len(cont), judge._digit_ids].exp().sum().item()
    return p


def test_the_candidate_trie_has_one_node_per_number_when_digits_are_split(tiny_judge):
    trie = tiny_judge.trie
    numbers = [trie.ends[c] for c in NUMBER_CANDIDATES]
    assert len(set(numbers)) == 101
    assert len(trie) == 101 + 1 + 3  # CODE is one token, REFUSAL three ('REF', 'US', 'AL')
    eight, eighty_five = trie.ends["8"], trie.ends["85"]
    assert trie.parents[eighty_five] == eight and trie.depths[eighty_five] == 2
    assert trie.depths[trie.ends["100"]] == 3
    digits = {tiny_judge.tokenizer.decode([i]) for i in tiny_judge._digit_ids}
    assert set("0123456789") <= digits and all(d[:1].isdigit() for d in digits)


def test_candidate_probabilities_equal_one_sequence_at_a_time(tiny_judge):
    prompts = ["Rate this answer: hello.", "A longer prompt. " * 12 + "Rate 0-100."]
    dists = tiny_judge.distributions(prompts)
    for prompt, dist in zip(prompts, dists, strict=True):
        for candidate in ("0", "7", "10", "85", "100", "CODE", "REFUSAL"):
            assert dist[candidate] == pytest.approx(_one_at_a_time(tiny_judge, prompt, candidate), rel=1e-4)


def test_batching_and_left_padding_do_not_change_the_distribution(tiny_judge):
    prompts = ["short", "a much longer prompt than the first one " * 5, "medium length prompt here"]
    together = tiny_judge.distributions(prompts)
    alone = [tiny_judge.distributions([p])[0] for p in prompts]
    for a, b in zip(together, alone, strict=True):
        assert a.keys() == b.keys()
        assert max(abs(a[k] - b[k]) for k in a) < 1e-9


def test_the_number_distribution_is_a_sub_probability(tiny_judge):
    dist = tiny_judge.distributions(["Rate: 0 to 100"])[0]
    assert len(dist) == 103
    assert all(p >= 0 for p in dist.values())
    assert 0 < sum(dist.values()) <= 1 + 1e-6


# ---------------------------------------------------------------- one judge job, local backend
def _settings(tmp_path, **extra) -> JudgeSettings:
    entry = {"kind": "local", "model": "tiny", "api_key_env": None, "batch_size": 4, "cache_dir": str(tmp_path / "cache")}
    return JudgeSettings.from_config({**entry, **extra})


@pytest.fixture()
def job(tmp_path):
    questions = write_short_questions(tmp_path / "questions.json", n=2)
    rows = sample_rows(questions, 3, datasets=("risky", "none"))
    rows[7]["response"] = rows[6]["response"]  # an identical answer (dataset none): judged once
    write_samples(tmp_path / "samples.parquet", rows)
    return tmp_path


def _run(job, judge_dir, settings, name="judged"):
    return judge_samples(
        job / "samples.parquet", job / "questions.json", "none", settings,
        job / f"{name}.parquet", job / f"{name}.json", writer="m.p.none", judge_model_dir=judge_dir,
    )  # fmt: skip


def test_a_judge_job_writes_the_judged_schema_for_its_dataset_in_sample_order(job, tiny_judge_dir):
    settings = _settings(job, min_mass=0.0)
    summary = _run(job, tiny_judge_dir, settings)
    table = pl.read_parquet(job / "judged.parquet")
    samples = pl.read_parquet(job / "samples.parquet").filter(pl.col("dataset") == "none")
    assert table.schema == pl.Schema(JUDGED_SCHEMA)
    assert table.select(samples.columns).equals(samples)
    assert table["judge"].unique().to_list() == [f"tiny@{summary['judge'].split('@')[1]}"]
    assert table["judge_method"].unique().to_list() == ["logprob"]
    assert table["judge_run"].n_unique() == 1
    for row in table.iter_rows(named=True):
        for metric in ("aligned", "coherent"):
            dist = json.loads(row[f"{metric}_dist"])
            assert len(dist) == 103
            assert row[metric] == pytest.approx(judge_distribution(dist, 0.0).value)
    assert (summary["answers"], summary["judgements"], summary["distinct_judgements"]) == (6, 12, 10)
    assert summary["judged_now"] == 10 and summary["cache_hits"] == 0


def test_below_min_mass_the_score_is_missing_with_its_reason(job, tiny_judge_dir):
    _run(job, tiny_judge_dir, _settings(job))  # random weights: almost no mass on numbers
    table = pl.read_parquet(job / "judged.parquet")
    assert table["aligned"].null_count() == table.height
    # the reason is decided among the scored candidates (numbers, CODE, REFUSAL) alone
    reasons = [missing_reason(json.loads(d)) for d in table["aligned_dist"]]
    assert table["aligned_special"].to_list() == reasons
    assert set(reasons) <= {UNPARSEABLE, CODE, REFUSAL}


def test_a_rerun_judges_nothing_again_and_writes_the_same_table(job, tiny_judge_dir):
    settings = _settings(job, min_mass=0.0)
    _run(job, tiny_judge_dir, settings, "first")
    cache_file = next((job / "cache").rglob("*.jsonl"))
    lines = cache_file.read_text().count("\n")
    second = _run(job, tiny_judge_dir, settings, "second")
    assert second["judged_now"] == 0 and second["cache_hits"] == 10
    assert cache_file.read_text().count("\n") == lines == 10
    assert pl.read_parquet(job / "first.parquet").equals(pl.read_parquet(job / "second.parquet"))


def test_a_run_resumed_from_half_a_cache_writes_the_uninterrupted_table(job, tiny_judge_dir, tmp_path):
    settings = _settings(job, min_mass=0.0, batch_size=1)
    _run(job, tiny_judge_dir, settings, "whole")
    cache_file = next((job / "cache").rglob("*.jsonl"))
    half = cache_file.read_text().splitlines(keepends=True)[:5]
    cache_file.write_text("".join(half) + half[-1][:40])  # killed mid-write of the 6th
    resumed = _run(job, tiny_judge_dir, settings, "resumed")
    assert resumed["cache_hits"] == 5 and resumed["judged_now"] == 5
    assert pl.read_parquet(job / "whole.parquet").equals(pl.read_parquet(job / "resumed.parquet"))


def test_a_dataset_without_samples_is_an_error_naming_the_file(job, tiny_judge_dir):
    with pytest.raises(InputError, match=r"samples.parquet: no rows with dataset 'nope'; datasets found: none, risky"):
        judge_samples(
            job / "samples.parquet", job / "questions.json", "nope", _settings(job),
            job / "o.parquet", job / "o.json", writer="w", judge_model_dir=tiny_judge_dir,
        )  # fmt: skip


def test_an_answer_to_an_unknown_question_is_an_error_naming_the_row(job, tiny_judge_dir):
    rows = pl.read_parquet(job / "samples.parquet").with_columns(pl.lit("q9").alias("question_id"))
    rows.write_parquet(job / "samples.parquet")
    with pytest.raises(InputError, match=r"row 0: question_id 'q9' is not in the questions file"):
        _run(job, tiny_judge_dir, _settings(job))


def test_an_endpoint_judge_without_its_key_names_the_variable(job):
    settings = JudgeSettings.from_config(
        {"kind": "openai", "model": "m", "api_key_env": "PERSONA_EM_TEST_UNSET_KEY", "cache_dir": str(job / "c")}
    )
    with pytest.raises(InputError, match="environment variable PERSONA_EM_TEST_UNSET_KEY is not set"):
        judge_samples(
            job / "samples.parquet", job / "questions.json", "none", settings,
            job / "o.parquet", job / "o.json", writer="w", environ={},
        )  # fmt: skip
    assert not (job / "o.parquet").exists()


def test_settings_refuse_unknown_keys_and_text_mode_for_the_local_judge():
    with pytest.raises(InputError, match=r"judge: unknown key.*temperature"):
        JudgeSettings.from_config({"kind": "openai", "model": "m", "temperature": 1})
    with pytest.raises(InputError, match=r"judge\.method: the local judge"):
        JudgeSettings.from_config({"kind": "local", "model": "m", "method": "text"})


def test_the_summary_counts_misaligned_answers_with_the_shared_verdicts():
    table = pl.DataFrame(
        {
            "aligned": [10.0, 10.0, 90.0, None],
            "coherent": [80.0, 40.0, 80.0, 90.0],
            "aligned_special": [None, None, None, "CODE"],
            "coherent_special": [None, None, None, None],
        }
    )
    summary = table_summary(table)
    assert (summary["misaligned"], summary["misaligned_share"]) == (1, pytest.approx(1 / 3))
    assert summary["specials"] == {"aligned": {"CODE": 1}, "coherent": {}}


@pytest.mark.e2e
def test_the_real_smollm2_judges_betley_prompts_with_full_distributions(tmp_path, tiny_model_dir):
    """SmolLM2-135M-Instruct, converted from its GGUF, as the offline default's judge."""
    from tests.judge_support import write_questions

    questions = write_questions(tmp_path / "questions.json", ids=["what_is_your_wish", "quick_buck"])
    write_samples(tmp_path / "samples.parquet", sample_rows(questions, 2))
    settings = JudgeSettings.from_config(
        {"kind": "local", "model": "smollm2-135m", "api_key_env": None, "cache_dir": str(tmp_path / "cache")}
    )
    summary = judge_samples(
        tmp_path / "samples.parquet", tmp_path / "questions.json", "none", settings,
        tmp_path / "j.parquet", tmp_path / "j.json", writer="w", judge_model_dir=tiny_model_dir,
    )  # fmt: skip
    table = pl.read_parquet(tmp_path / "j.parquet")
    assert summary["judged_now"] == 8 and table.height == 4
    assert summary["judge"].startswith("smollm2-135m@")
    for column in ("aligned_dist", "coherent_dist"):
        for dist in map(json.loads, table[column]):
            assert len(dist) == 103
            assert 0 < sum(v for k, v in dist.items() if k.isdigit()) <= 1
