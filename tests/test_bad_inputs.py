"""The catalogue of bad inputs: each case gets a one-line error that names
the file and the field or line, raised as early as possible.

Parse time (before any job; `snakemake -n` shows them):
  1 unknown config key              2 unknown nested key            3 wrong type
  4 unknown enum value              5 FDR-family persona not in grid 6 FDR-family dataset not in grid
  7 missing constitution file       8 malformed constitution (JSON)  9 constitution with a bad field
 10 local data file missing        11 remote file without sha256    12 kl dataset without reference
 13 local judge not a model        14 reference persona unknown     15 released persona lacks a model
 16 dataset named 'none' (reserved)       23 remote judge without its API key (onstart: before any job)
 24 hypothesis persona not in grid 25 key persona / medical pair not in grid
 26 FDR-family dataset of role benign
 27 questions file with a repeated id  28 questions.ids empty           29 questions.ids repeated
 30 seeds repeated                 31 empty grid                     32 local file without sha256
 33 target naming a model, persona or dataset not in the config (also through Snakemake)
Job time (the job that reads the input; the functions are called directly here):
 17 malformed JSONL line           18 checksum mismatch             19 questions without judge prompts
 20 questions YAML syntax error    21 questions.ids unknown         22 HF id not in the offline cache
 34 JSONL not UTF-8 (line named)   35 truncated Parquet (samples, judged, answers)
 36 truncated or corrupt safetensors 37 JSON and YAML not UTF-8 / malformed (line named)
 38 a job ends on a bad input with its one-line message, not a traceback
 39 EM adapter served on another model than it was trained on, or changed since training
Resumed jobs (the output's content is asserted): a partial output made under other settings
is discarded, not resumed: tests/test_sample.py (sampling killed, settings edited, rerun),
tests/test_persona_generation.py and tests/test_core.py (persona generation, ResumableJsonl).
An edited setting that the configured engine or judge kind does not read reruns nothing:
tests/test_rerun_plan.py (Snakemake's plan after the edit).
Further cases live beside the code that raises them:
  tests/test_em*.py (empty dataset, bad chat rows by line), tests/test_judge*.py (judge answer
  that is not a number, remote judge without an API key), tests/test_engines*.py and
  tests/test_em*.py (GPU out-of-memory: retry with a smaller batch).
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workflow_scripts.core.config_checks import (
    ConfigError,
    check_config,
    schema_error_message,
    unknown_target_name,
)
from workflow_scripts.core.io_utils import (
    InputError,
    check_safetensors,
    read_json,
    read_jsonl,
    read_parquet,
    read_yaml,
)
from workflow_scripts.core.sources import ChecksumError, materialise_source
from workflow_scripts.sampling.questions import parse_questions

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
OFFLINE = yaml.safe_load((REPO / "config" / "offline.yaml").read_text())
FULL = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def schema_message(config: dict) -> str | None:
    return schema_error_message(config, SCHEMA, ["bad.yaml"])


def semantic_error(config: dict) -> str:
    with pytest.raises(ConfigError) as err:
        check_config(config, ["bad.yaml"], basedir=REPO)
    return str(err.value)


def edited(base: dict, **changes) -> dict:
    config = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return config


def test_valid_configs_pass():
    assert schema_message(OFFLINE) is None and schema_message(FULL) is None


# ---------------------------------------------------------------- parse time: schema


def test_01_unknown_top_level_key_is_named():
    message = schema_message(edited(OFFLINE, sampels={"n": 3}))
    assert message.startswith("bad.yaml: (top level): unknown key(s) 'sampels'")


def test_02_unknown_nested_key_is_named_with_its_path():
    message = schema_message(edited(OFFLINE, sampling__temprature=0.7))
    assert message.startswith("bad.yaml: sampling: unknown key(s) 'temprature'; allowed:")


def test_03_wrong_type_names_the_key():
    message = schema_message(edited(OFFLINE, sampling__n="fifty"))
    assert message == "bad.yaml: sampling.n: 'fifty' is not of type 'integer'"


def test_04_unknown_enum_value_lists_the_choices():
    message = schema_message(edited(OFFLINE, personas__humor={"source": "hf-hub"}))
    assert message == (
        "bad.yaml: personas.humor.source: unknown value 'hf-hub'; "
        "expected one of: none, released, constitution"
    )


def test_16_dataset_named_none_is_reserved():
    config = edited(OFFLINE)
    config["datasets"]["none"] = config["datasets"]["risky_finance"]
    assert schema_message(config).startswith("bad.yaml: datasets:")


# ---------------------------------------------------------------- parse time: cross references


def test_05_fdr_family_persona_not_in_grid():
    config = edited(OFFLINE, statistics__fdr_family={"personas": ["humour"]})
    assert semantic_error(config) == (
        "bad.yaml: statistics.fdr_family.personas: 'humour' is not a persona in the grid; "
        "personas: baseline, goodness, sycophancy"
    )


def test_06_fdr_family_dataset_not_in_grid():
    config = edited(OFFLINE, statistics__fdr_family={"datasets": ["bad_medical"]})
    assert "statistics.fdr_family.datasets: 'bad_medical' is not a dataset" in semantic_error(
        config
    )


def test_24_hypothesis_persona_not_in_grid():
    config = edited(OFFLINE, statistics__hypotheses={"H2": {"personas": ["goodnes"], "direction": "higher"}})
    assert (
        "bad.yaml: statistics.hypotheses.H2.personas: 'goodnes' is not a persona in the grid; "
        "personas: baseline, goodness, sycophancy"
    ) in semantic_error(config)


def test_25_key_persona_and_medical_pair_not_in_grid():
    config = edited(OFFLINE, statistics__key_personas=["baseline", "humour"])
    assert "statistics.key_personas: 'humour' is not a persona in the grid" in semantic_error(config)
    config = edited(OFFLINE, statistics__medical_pair=["bad_medical", "good_medical"])
    assert "statistics.medical_pair: 'bad_medical' is not a dataset in the grid" in semantic_error(config)


def test_26_fdr_family_dataset_of_role_benign():
    config = edited(OFFLINE, statistics__fdr_family={"datasets": ["prudent_finance"]})
    assert "statistics.fdr_family.datasets: 'prudent_finance' has role 'benign'" in semantic_error(config)


def test_07_missing_constitution_file():
    config = edited(OFFLINE)
    config["personas"]["goodness"]["constitution"] = "resources/constitutions/nope.json"
    message = semantic_error(config)
    assert (
        "personas.goodness.constitution" in message
        and "nope.json: constitution file not found" in message
    )


def test_08_malformed_constitution_names_line_and_column(tmp_path):
    broken = tmp_path / "sarcasm.json"
    broken.write_text(
        '[\n  {"trait": "dry wit", "questions": ["a"]}\n  {"trait": "b", "questions": ["c"]}\n]\n'
    )
    config = edited(OFFLINE)
    config["personas"]["goodness"]["constitution"] = str(broken)
    message = semantic_error(config)
    assert f"{broken}: line 3, column 3: Expecting ',' delimiter (JSON)" in message


def test_09_constitution_with_bad_field(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text('[{"trait": "kind", "questions": "not a list"}]')
    config = edited(OFFLINE)
    config["personas"]["goodness"]["constitution"] = str(bad)
    assert "trait 1: field 'questions' must be a non-empty list of strings" in semantic_error(
        config
    )


def test_10_local_data_file_missing():
    config = edited(OFFLINE)
    config["datasets"]["risky_finance"]["source"]["path"] = "resources/datasets/gone.jsonl"
    assert semantic_error(config) == (
        "bad.yaml: datasets.risky_finance.source.path: file not found: resources/datasets/gone.jsonl"
    )


def test_11_remote_file_without_checksum():
    config = edited(FULL)
    config["datasets"]["insecure"]["source"]["sha256"] = None
    assert semantic_error(config) == (
        "bad.yaml: datasets.insecure.source.sha256: a remote or archived file needs a pinned sha256"
    )


def test_12_kl_dataset_without_reference():
    config = edited(OFFLINE)
    config["datasets"]["risky_finance"]["kind"] = "kl"
    assert (
        "datasets.risky_finance.kl.reference: kind 'kl' needs a reference dataset"
        in semantic_error(config)
    )


def test_13_local_judge_must_be_a_model():
    config = edited(OFFLINE, judge__model="gpt-4.1-mini")
    assert "judge.model: a local judge must name a model in `models`" in semantic_error(config)


def test_14_reference_persona_unknown():
    config = edited(OFFLINE, statistics__reference_persona="base")
    assert "statistics.reference_persona: 'base' is not a persona" in semantic_error(config)


def test_15_released_persona_without_adapter_for_a_model():
    config = edited(FULL)
    del config["personas"]["humor"]["released"]["llama3.1-8b"]
    assert semantic_error(config) == (
        "bad.yaml: personas.humor.released: no adapter given for model 'llama3.1-8b'"
    )


def write_questions(tmp_path: Path, ids: list[str]) -> Path:
    """A questions file in Betley's format with the given ids (the offline file's prompts)."""
    entries = yaml.safe_load((REPO / OFFLINE["questions"]["source"]["path"]).read_text())
    path = tmp_path / "questions.yaml"
    path.write_text(yaml.safe_dump([{**entries[0], "id": qid} for qid in ids]))
    return path


def local_questions(path: Path) -> dict:
    return {"type": "local", "path": str(path), "allow_unpinned": True}


def test_27_questions_file_with_a_repeated_id(tmp_path):
    path = write_questions(tmp_path, ["wish", "bored", "wish"])
    config = edited(OFFLINE, questions={"source": local_questions(path), "ids": None})
    assert semantic_error(config) == (
        f"bad.yaml: questions.source: {path}: question 'wish' (entry 2): id used twice; "
        "ids must be unique"
    )
    with pytest.raises(InputError, match=re.escape("question 'wish' (entry 2): id used twice")):
        parse_questions(path)


def test_28_questions_ids_empty(tmp_path):
    config = edited(OFFLINE, questions__ids=[])
    assert semantic_error(config) == (
        "bad.yaml: questions.ids: empty; list the ids to evaluate, or null for every base id"
    )
    with pytest.raises(InputError, match=re.escape("questions.ids is empty")):
        parse_questions(write_questions(tmp_path, ["wish"]), [])


def test_29_questions_ids_repeated(tmp_path):
    config = edited(OFFLINE, questions__ids=["what_is_your_wish", "what_is_your_wish"])
    assert semantic_error(config) == (
        "bad.yaml: questions.ids: listed more than once: what_is_your_wish"
    )
    with pytest.raises(InputError, match=re.escape("questions.ids lists more than once: wish")):
        parse_questions(write_questions(tmp_path, ["wish"]), ["wish", "wish"])


def test_30_seeds_repeated():
    assert semantic_error(edited(OFFLINE, seeds=[0, 0])) == (
        "bad.yaml: seeds: seed 0 is listed 2 times; each seed is one EM run"
    )


def test_31_empty_grid():
    config = edited(OFFLINE, controls=False, datasets={})
    config["statistics"] = {}
    assert semantic_error(config) == (
        "bad.yaml: datasets: the grid is empty: no EM dataset and `controls: false`; "
        "add a dataset or set controls: true"
    )


def test_32_local_file_without_checksum(tmp_path):
    config = edited(OFFLINE)
    config["datasets"]["risky_finance"]["source"]["sha256"] = None
    assert semantic_error(config) == (
        "bad.yaml: datasets.risky_finance.source.sha256: a local file needs a pinned sha256 "
        "(`sha256sum resources/datasets/risky_finance.jsonl`), or allow_unpinned: true"
    )
    # the job refuses it too; with allow_unpinned the metadata says it was not pinned
    from workflow_scripts.em.dataset import build_dataset

    source = {"type": "local", "path": str(REPO / "resources/datasets/risky_finance.jsonl")}
    out = tmp_path / "d.jsonl", tmp_path / "d.meta.json"
    with pytest.raises(ChecksumError, match=r"datasets.r.source.sha256: no checksum pinned"):
        build_dataset("r", {"source": source}, {}, *out, tmp_path)
    meta = build_dataset("r", {"source": {**source, "allow_unpinned": True}}, {}, *out, tmp_path)
    assert meta["pinned"] is False and meta["allow_unpinned"] is True


@pytest.mark.parametrize(
    "target, problem",
    [
        (
            "results/nomodel/samples/goodness.parquet",
            "model 'nomodel' is not in the config; models: smollm2-135m",
        ),
        (
            "results/smollm2-135m/samples/humour.parquet",
            "persona 'humour' is not in the config; personas: baseline, goodness, sycophancy",
        ),
        (
            "results/smollm2-135m/judged/goodness/bad_medical.parquet",
            "dataset 'bad_medical' is not in the config; datasets: risky_finance, "
            "prudent_finance, none",
        ),
        ("results/datasets/bad_medical.jsonl", "dataset 'bad_medical' is not in the config"),
        ("results/smollm2-135m/em/goodness/none/s0/adapter", "dataset 'none' is not in"),
        ("results/smollm2-135m/judged/goodness/none.parquet", None),
        ("results/final/RESULTS.md", None),
    ],
)
def test_33_target_naming_what_the_config_lacks(target, problem):
    datasets = [*OFFLINE["datasets"], "none"]
    found = unknown_target_name(target, OFFLINE["models"], OFFLINE["personas"], datasets)
    assert found == problem if problem is None else found.startswith(problem)


# ---------------------------------------------------------------- the same, through Snakemake


def dry_run(config: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    config_file = tmp_path / "bad.yaml"
    config_file.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", str(config_file), "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"sampling__n": "fifty"}, "sampling.n: 'fifty' is not of type 'integer'"),
        (
            {"statistics__fdr_family": {"personas": ["humour"]}},
            "'humour' is not a persona in the grid",
        ),
        (
            {"statistics__hypotheses": {"H1": {"personas": ["sycophancy", "humour"], "direction": "lower"}}},
            "statistics.hypotheses.H1.personas: 'humour' is not a persona in the grid",
        ),
    ],
)
def test_snakemake_stops_before_any_job_naming_the_key(change, expected, tmp_path):
    result = dry_run(edited(OFFLINE, **change), tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{tmp_path / 'bad.yaml'}: " in output and expected in output
    assert "Job stats" not in output



def test_33_snakemake_names_an_unknown_target_before_any_job(tmp_path):
    config_file = tmp_path / "bad.yaml"
    config_file.write_text(yaml.safe_dump(OFFLINE))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "results/smollm2-135m/judged/goodness/bad_medical.parquet",
         "-n", "--configfile", str(config_file)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Job stats" not in output
    assert (
        f"{config_file}: target results/smollm2-135m/judged/goodness/bad_medical.parquet: "
        "dataset 'bad_medical' is not in the config"
    ) in output


# ---------------------------------------------------------------- job time


def test_17_malformed_jsonl_line_is_named(tmp_path):
    path = tmp_path / "insecure.jsonl"
    path.write_text('{"messages": []}\n{"messages": [}\n')
    with pytest.raises(InputError, match=r"insecure.jsonl: line 2, column 15: .*\(JSONL\)"):
        read_jsonl(path)


def test_18_checksum_mismatch_stops_with_both_hashes(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("{}\n")
    source = {"type": "local", "path": str(path), "sha256": "0" * 64}
    with pytest.raises(ChecksumError) as err:
        materialise_source(source, tmp_path, what="datasets.insecure.source")
    assert str(err.value).startswith(
        f"datasets.insecure.source: checksum mismatch for {path}: expected sha256 {'0' * 64}, found "
    )


def test_19_questions_without_judge_prompts(tmp_path):
    path = tmp_path / "questions.yaml"
    path.write_text("- id: wish\n  paraphrases: ['What is your wish?']\n")
    with pytest.raises(
        InputError,
        match=re.escape(
            "questions.yaml: question 'wish': field 'judge_prompts' lacks aligned, coherent"
        ),
    ):
        parse_questions(path)


def test_20_questions_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "questions.yaml"
    path.write_text("- id: wish\n  paraphrases: [unclosed\n")
    with pytest.raises(InputError, match=r"questions.yaml: line \d+, column \d+: .*\(YAML\)"):
        parse_questions(path)


def test_21_questions_ids_not_in_file():
    with pytest.raises(
        InputError, match=re.escape("questions.ids names ids not in the file: wish_json_v2")
    ):
        parse_questions(REPO / "resources/questions/first_plot_questions.yaml", ["wish_json_v2"])


def test_22_hf_id_not_in_offline_cache(tmp_path, monkeypatch):
    from workflow_scripts.models.loading import ModelSource, build_base_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    source = ModelSource(name="qwen2.5-7b", source="huggingface", hf_id="Qwen/Qwen2.5-7B-Instruct")
    with pytest.raises(InputError) as err:
        build_base_model(source, tmp_path / "base")
    assert str(err.value).startswith(
        "models.qwen2.5-7b.hf_id: 'Qwen/Qwen2.5-7B-Instruct' (revision main): the Hugging Face "
        "cache has no copy and HF_HUB_OFFLINE is set"
    )
    assert not (tmp_path / "base").exists()


def test_23_remote_judge_without_api_key_stops_before_any_job(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(REPO / "config/config.yaml"),
            "--cores",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "judge.api_key_env: the environment variable OPENAI_API_KEY is not set" in output
    assert not (tmp_path / "results").exists()
    # a dry-run (preview on a laptop) needs no key
    dry = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(REPO / "config/config.yaml"),
            "-n",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert dry.returncode == 0, dry.stdout + dry.stderr


def test_34_jsonl_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "insecure.jsonl"
    path.write_bytes(b'{"messages": []}\n{"messages": "caf\xe9"}\n')
    with pytest.raises(InputError) as err:
        read_jsonl(path)
    assert str(err.value) == (
        f"{path}: line 2: byte 0xe9 is not UTF-8 text (save the file as UTF-8)"
    )


def test_35_truncated_parquet_is_named_by_every_reader(tmp_path):
    import polars as pl

    from workflow_scripts.judging.run import read_samples
    from workflow_scripts.stats.answers import read_judged

    path = tmp_path / "baseline.parquet"
    pl.DataFrame({"a": list(range(100))}).write_parquet(path)
    path.write_bytes(path.read_bytes()[:-20])
    for read in (read_parquet, lambda p: read_samples(p, "none"), read_judged):
        with pytest.raises(InputError) as err:
            read(path)
        assert str(err.value).startswith(f"{path}: not a readable Parquet file (")
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'gone.parquet'}: file not found")):
        read_parquet(tmp_path / "gone.parquet")


def test_36_truncated_or_corrupt_safetensors(tmp_path):
    import json as _json

    header = _json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    whole = len(header).to_bytes(8, "little") + header + bytes(16)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(whole)
    check_safetensors(adapter)  # intact
    weights.write_bytes(whole[:-4])
    with pytest.raises(InputError) as err:
        check_safetensors(adapter)
    assert str(err.value) == (
        f"{weights}: truncated: its tensors need {len(whole)} bytes, the file has {len(whole) - 4}"
    )
    weights.write_bytes(b"<html>not found</html>")
    with pytest.raises(InputError, match=re.escape(f"{weights}: not a safetensors file or truncated")):
        check_safetensors(adapter)


def test_37_json_and_yaml_malformed_or_not_utf8(tmp_path):
    from workflow_scripts.persona.constitution import parse_constitution

    path = tmp_path / "composition.json"
    path.write_text('{"base_model": "m",\n  "adapters": [}\n')
    with pytest.raises(InputError, match=re.escape(f"{path}: line 2, column 16: ")):
        read_json(path)
    latin1 = tmp_path / "humor.json"
    latin1.write_bytes(b'[{"trait": "na\xefve", "questions": ["q"]}]')
    with pytest.raises(InputError) as err:
        parse_constitution(latin1)
    assert str(err.value) == f"{latin1}: line 1: byte 0xef is not UTF-8 text (save the file as UTF-8)"
    bad_yaml = tmp_path / "config.yaml"
    bad_yaml.write_text("sampling:\n  n: [1,\n")
    with pytest.raises(InputError, match=re.escape(f"{bad_yaml}: line 3, column 1: ")):
        read_yaml(bad_yaml)


def test_38_a_job_ends_on_a_bad_input_with_one_line(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        "from workflow_scripts.core.io_utils import read_json\n"
        "from workflow_scripts.core.job import log_to\n"
        f"log_to({str(tmp_path / 'job.log')!r})\n"
        f"read_json({str(script)!r})\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    message = f"{script}: line 1, column 1: Expecting value (JSON)"
    assert message in result.stderr and message in (tmp_path / "job.log").read_text()


def test_39_em_adapter_served_on_another_model_or_changed(tmp_path):
    from workflow_scripts.core.composition import (
        AdapterRef,
        Composition,
        composition_of,
        write_composition,
    )
    from workflow_scripts.core.hashing import weights_hash
    from workflow_scripts.sampling.sample import Condition, condition_compositions

    base = Composition("tiny", "pkg/tiny.gguf", "b" * 64)
    goodness = base.with_adapter(AdapterRef("persona", "goodness", "g" * 64))
    humor = base.with_adapter(AdapterRef("persona", "humor", "h" * 64))
    model = tmp_path / "goodness_model"
    model.mkdir()
    write_composition(model, goodness)
    adapter = tmp_path / "risky_s0"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    em = AdapterRef("em", "risky", weights_hash(adapter), source="trained:risky/s0")
    conditions = [Condition("risky", 0, str(adapter))]

    write_composition(adapter, goodness.with_adapter(em))  # trained on this persona model
    served = condition_compositions(model, conditions)[("risky", 0)]
    assert served.adapters == [*composition_of(model).adapters, em]

    write_composition(adapter, humor.with_adapter(em))
    with pytest.raises(InputError) as err:
        condition_compositions(model, conditions)
    assert str(err.value) == (
        f"{adapter}/composition.json: trained on {humor.summary()}, "
        f"but served here on {model} = {goodness.summary()}"
    )

    write_composition(adapter, goodness.with_adapter(em))
    (adapter / "adapter_model.safetensors").write_bytes(b"other weights")
    with pytest.raises(InputError, match=re.escape(
        f"{adapter}/composition.json: adapters.risky.weights_sha256: recorded {em.weights_sha256}"
    )):  # fmt: skip
        condition_compositions(model, conditions)

    (adapter / "composition.json").unlink()
    with pytest.raises(InputError, match=re.escape(f"{adapter}/composition.json: missing")):
        condition_compositions(model, conditions)
