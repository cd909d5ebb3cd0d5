"""Shared by every stage: chat rendering, model composition records, hashing, atomic
file I/O, the answer schema, config checks, sources and archives, the misaligned-answer
rule, and the job-start helper every rule script calls."""
