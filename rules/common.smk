"""Helpers shared by every rule: config validation, grid dimensions, input functions
and parameter dictionaries (each stage's paths live in its own .smk). Parse-time work stays cheap (no torch,
no network): every cluster job re-parses the Snakefile."""

import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The rules' scripts import `workflow_scripts` from this checkout, in any environment.
REPO = Path(workflow.basedir).resolve()
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
_PYTHONPATH = os.environ.get("PYTHONPATH", "")
if str(REPO) not in _PYTHONPATH.split(os.pathsep):
    os.environ.update(
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), _PYTHONPATH) if p)
    )

import yaml

from workflow_scripts.core.config_checks import (
    ConfigError,
    apply_scale_study,
    check_config,
    fit_statistics_defaults_to_grid,
    check_targets,
    schema_error_message,
)

CONFIG_FILES = [str(f) for f in workflow.configfiles] or ["config"]
_SCHEMA = REPO / "config" / "schema.yaml"
apply_scale_study(config)  # `--config include_scale=true`: the scale block is the study
fit_statistics_defaults_to_grid(config)
try:
    validate(config, str(_SCHEMA))
except WorkflowError:
    message = schema_error_message(
        config, yaml.safe_load(_SCHEMA.read_text()), CONFIG_FILES
    )
    raise ConfigError(message) from None
check_config(config, CONFIG_FILES, basedir=Path.cwd())
# A target naming a model, persona or dataset the config lacks: said here, by name
# (the wildcards below match only the config's names).
check_targets(sys.argv[1:], config, CONFIG_FILES)


# ---------------------------------------------------------------- grid dimensions
from workflow_scripts.core.schema import NO_EM  # dataset of the no-EM controls

from workflow_scripts.core.grid import Grid

GRID = Grid.from_config(config)
MODELS = list(GRID.models)
PERSONAS = list(GRID.personas)
DATASETS = list(GRID.datasets)
SEEDS = list(GRID.seeds)
REFERENCE_PERSONA = config["statistics"]["reference_persona"]


def name_pattern(names):
    """A wildcard that matches only the config's names: a target naming anything
    else is reported before any job instead of failing inside a job."""
    return "|".join(re.escape(name) for name in names)


wildcard_constraints:
    model=name_pattern(config["models"]),
    persona=name_pattern(config["personas"]),
    dataset=name_pattern([*config.get("datasets", {}), NO_EM]),
    seed=r"\d+",


# ---------------------------------------------------------------- resources
# A retried job always gets more time (`hours`, `minutes`); only jobs that load a model
# and can run out of memory get more memory (`gpu_mem`, `model_mem`); the others ask
# for the constant they use.
def gpu_mem(base_mb):
    return lambda wc, attempt: base_mb * attempt


def model_mem(base_mb, most_mb):
    """Memory of a CPU job that loads a model: more on each retry, never more than
    most_mb (what the serial partition of profiles/leonardo allows a job)."""
    return lambda wc, attempt: min(base_mb * attempt, most_mb)


def hours(base):
    return lambda wc, attempt: f"{base * attempt}h"


def minutes(base):
    return lambda wc, attempt: f"{base * attempt}m"


# ---------------------------------------------------------------- models and personas
def persona_entry(wildcards):
    return config["personas"][wildcards.persona]


def persona_source(persona):
    return config["personas"][persona]["source"]


def model_dir(name):
    return BASE_MODEL.format(model=name)


def base_model_dir(wildcards):
    return model_dir(wildcards.model)


def persona_model_dir(wildcards):
    """The model a persona's EM training and sampling start from: the base model
    for the no-persona baseline, else the base with the persona adapter folded in."""
    if persona_source(wildcards.persona) == "none":
        return model_dir(wildcards.model)
    return PERSONA_MODEL.format(model=wildcards.model, persona=wildcards.persona)


def folded_models_root():
    """Where folded persona models go: config storage.folded_models_dir (environment
    variables expanded, e.g. $SCRATCH on a cluster), else results/."""
    root = config["storage"]["folded_models_dir"]
    if not root:
        return "results"
    expanded = os.path.expandvars(root)
    if "$" in expanded:
        raise ConfigError(
            f"{', '.join(CONFIG_FILES)}: storage.folded_models_dir: '{root}' names an "
            "environment variable that is not set"
        )
    return expanded.rstrip("/")


def folded_model_output(path):
    """A folded persona model, temporary when config storage.temporary_folded_models
    says so: Snakemake deletes it once every job that reads it (persona check, EM
    training, sampling) is done, and folds it again if a later job needs it; the
    base model and the persona adapter it is rebuilt from are kept."""
    if config["storage"]["temporary_folded_models"]:
        return temp(path)
    return path


def persona_adapter_dir(wildcards):
    source = persona_source(wildcards.persona)
    if source == "released":
        return RELEASED_ADAPTER.format(**wildcards)
    if source == "constitution":
        return TRAINED_ADAPTER.format(**wildcards)
    raise WorkflowError(
        f"persona '{wildcards.persona}' has source 'none': it has no adapter to fold"
    )


def helper_model(key):
    """Config name of a helper model of persona training (None: the student itself)."""
    return config["persona_training"].get(key)


def teacher_model_dir(wildcards):
    return model_dir(helper_model("teacher_model") or wildcards.model)


def generator_model_dir(wildcards):
    name = (
        helper_model("generator_model")
        or helper_model("teacher_model")
        or wildcards.model
    )
    return model_dir(name)


def constitution_file(wildcards):
    return config["personas"][wildcards.persona]["constitution"]


def self_name(model):
    return config["models"][model].get("self_name")


def model_settings(wildcards):
    return {"name": wildcards.model, **config["models"][wildcards.model]}


# ---------------------------------------------------------------- EM datasets
def dataset_entry(wildcards):
    return config["datasets"][wildcards.dataset]


def dataset_source_inputs(wildcards):
    """Local files a dataset is read from (remote sources are fetched by the job)."""
    source = dataset_entry(wildcards)["source"]
    if source["type"] == "local":
        return [source["path"]]
    return []


def em_training_inputs(wildcards):
    files = {"data": DATASET_FILE.format(dataset=wildcards.dataset)}
    entry = dataset_entry(wildcards)
    if entry.get("kind") == "kl":
        files["kl_reference"] = DATASET_FILE.format(dataset=entry["kl"]["reference"])
    return files


def em_settings(wildcards):
    entry = dataset_entry(wildcards)
    return {
        **config["em_training"],
        "kind": entry.get("kind", "sft"),
        "kl_weight": (entry.get("kl") or {}).get("weight", 1.0),
        "seed": int(wildcards.seed),
    }


def em_conditions():
    """(dataset, seed) pairs trained per model x persona."""
    return GRID.em_conditions()


def em_adapters_of_persona(wildcards):
    return [
        EM_ADAPTER.format(
            model=wildcards.model, persona=wildcards.persona, dataset=d, seed=s
        )
        for d, s in em_conditions()
    ]


def sampled_datasets():
    return GRID.sampled_datasets()


# ---------------------------------------------------------------- judging
def judge_settings(wildcards):
    """The judge settings the configured kind reads (so editing a key it ignores reruns
    nothing), without any secret: the API key is read from the environment variable
    named here, inside the job, and never passed as a param."""
    return JUDGE_KIND.used_settings(config["judge"])


# ---------------------------------------------------------------- stage owners
# ---- persona (rules/persona.smk)
PERSONAS_WITH_ADAPTER = [p for p in PERSONAS if persona_source(p) != "none"]


def persona_self_name(model):
    """The name a model calls itself in OCT's prompts (config `self_name`, else its
    config name)."""
    return self_name(model) or model


def teacher_self_name(wildcards):
    return persona_self_name(helper_model("teacher_model") or wildcards.model)


def student_self_name(wildcards):
    return persona_self_name(wildcards.model)


def released_adapter_spec(wildcards):
    return persona_entry(wildcards)["released"][wildcards.model]


def folded_persona_models(wildcards):
    return [
        PERSONA_MODEL.format(model=wildcards.model, persona=p)
        for p in PERSONAS_WITH_ADAPTER
    ]


PERSONA_GENERATION_KEYS = ("temperature", "top_p", "seed")


def persona_settings(*keys):
    """The persona_training keys one rule uses (sampling keys included, and the chunk
    size of the run's engine only), so editing another stage's or engine's settings
    does not rerun it."""
    training = config["persona_training"]
    chunk = (
        "vllm_chunk_size" if config["sampling"]["engine"] == "vllm" else "chunk_size"
    )
    return {key: training[key] for key in (*PERSONA_GENERATION_KEYS, chunk, *keys)}


def persona_engine_settings(wildcards=None):
    """The generation engine of persona stages: the run's sampling engine (with its
    vLLM options only when that engine is vLLM)."""
    engine = {"kind": config["sampling"]["engine"]}
    if engine["kind"] == "vllm":
        engine["vllm"] = dict(config["sampling"].get("vllm") or {})
    return engine


def persona_prompt_inputs(wildcards):
    files = {
        "constitution": constitution_file(wildcards),
        "generator": generator_model_dir(wildcards),
    }
    extra = config["persona_training"].get("extra_prompts")
    if extra:
        files["extra_prompts"] = extra
    return files


def persona_check_inputs(wildcards):
    files = judge_inputs(wildcards)
    files["constitutions"] = [
        config["personas"][p]["constitution"]
        for p in PERSONAS_WITH_ADAPTER
        if persona_source(p) == "constitution"
    ]
    return files


# persona_check keys of the probe (answers to the trait prompts) and of the judging
# job (thresholds): editing a threshold rejudges without reloading the models
PERSONA_PROBE_KEYS = (
    "trait_prompts",
    "samples_per_prompt",
    "max_new_tokens",
    "temperature",
    "top_p",
    "seed",
)


def persona_probe_settings():
    return {k: v for k, v in config["persona_check"].items() if k in PERSONA_PROBE_KEYS}


def persona_check_settings():
    return {
        k: v for k, v in config["persona_check"].items() if k not in PERSONA_PROBE_KEYS
    }


def persona_trait_descriptions(wildcards=None):
    """What the trait-expression judge looks for, per persona: the constitution's
    numbered traits, or for a released adapter its description (else its name)."""
    from workflow_scripts.persona.constitution import parse_constitution
    from workflow_scripts.persona.oct import trait_string

    descriptions = {}
    for persona in PERSONAS_WITH_ADAPTER:
        entry = config["personas"][persona]
        if entry["source"] == "constitution":
            descriptions[persona] = trait_string(
                parse_constitution(entry["constitution"])
            )
        else:
            descriptions[persona] = (
                entry.get("description") or f"the character trait '{persona}'"
            )
    return descriptions


# ---- em (rules/em.smk)
def em_checkpoints_dir(wildcards):
    """Checkpoints of one EM run: not a declared output, so they survive a failed job
    and the rerun resumes from the last one."""
    return EM_CHECKPOINTS.format(
        model=wildcards.model,
        persona=wildcards.persona,
        dataset=wildcards.dataset,
        seed=wildcards.seed,
    )


def persona_has_adapter(wildcards):
    return persona_source(wildcards.persona) != "none"


def kl_reference_name(wildcards):
    entry = dataset_entry(wildcards)
    if entry.get("kind", "sft") != "kl":
        return None
    return entry["kl"]["reference"]


def dataset_archives(wildcards):
    """Archive entries (source and the NAME of the password variable; never a password)."""
    return config.get("archives", {})


# ---- sampling (rules/sampling.smk)
SAMPLING_ENV = (
    "../envs/vllm.yaml"
    if config["sampling"]["engine"] == "vllm"
    else "../envs/train.yaml"
)


def questions_source_inputs(wildcards):
    source = config["questions"]["source"]
    return [source["path"]] if source["type"] == "local" else []


SAMPLING_KEYS = ("engine", "n", "temperature", "top_p", "max_new_tokens", "seed")


def sampling_settings(wildcards=None):
    """The sampling settings the configured engine reads: `batch_size` for
    transformers, the `vllm` block for vLLM (so editing the other engine's settings
    reruns nothing)."""
    sampling = config["sampling"]
    settings = {key: sampling[key] for key in SAMPLING_KEYS}
    if sampling["engine"] == "vllm":
        settings["vllm"] = dict(sampling.get("vllm") or {})
    else:
        settings["batch_size"] = sampling["batch_size"]
    return settings


def sampling_conditions(wildcards):
    """What one persona's sampling job evaluates: the no-EM control (the persona
    model itself) and each EM adapter, with the adapter path it is served from."""
    conditions = (
        [{"dataset": NO_EM, "seed": 0, "adapter": None}] if config["controls"] else []
    )
    for dataset, seed in em_conditions():
        adapter = EM_ADAPTER.format(
            model=wildcards.model, persona=wildcards.persona, dataset=dataset, seed=seed
        )
        conditions.append({"dataset": dataset, "seed": seed, "adapter": adapter})
    return conditions


# ---- judging (rules/judging.smk)
from workflow_scripts.judging.kinds import judge_kind

JUDGE = config["judge"]
JUDGE_KIND = judge_kind(JUDGE["kind"])
JUDGE_ENV = f"../envs/{JUDGE_KIND.env}.yaml"


def judge_serves_config_model():
    """Whether the judge model is a config model's base-model directory (built by the
    models stage, so compute nodes without internet have it)."""
    return JUDGE_KIND.serves_config_model(JUDGE, config["models"])


def judge_inputs(wildcards):
    if judge_serves_config_model():
        return {"judge_model": model_dir(JUDGE["model"])}
    return {}


def judge_gpus():
    gpus = JUDGE.get("gpus")
    return gpus if gpus is not None else JUDGE_KIND.gpus


def judge_internet():
    return int(JUDGE_KIND.internet)


def judge_threads():
    """A remote judge waits on the network (a core is plenty); a judge that scores
    with a model in the job gets cores for it."""
    return 1 if JUDGE_KIND.internet else 4


def judge_mem():
    """Memory of a judging job: a remote judge's requests need little and never grow;
    a judge that loads a model gets more on each retry (it can run out)."""
    return 4_000 if JUDGE_KIND.internet else gpu_mem(16_000)


def missing_judge_key(jobs):
    """The API key variable a remote judge needs, if judge jobs are due and it is unset."""
    key_env = JUDGE.get("api_key_env")
    if not JUDGE_KIND.api_key or not key_env or os.environ.get(key_env):
        return None
    # persona_check judges trait expression with the same judge
    judging = {"judge", "persona_check"}
    return key_env if any(job.rule.name in judging for job in jobs) else None


onstart:
    # Before any job (and never on a dry-run): a remote judge without its key would
    # otherwise fail only after hours of training and sampling.
    key_env = missing_judge_key(
        workflow.dag.needrun_jobs()
    ) or missing_secondary_judge_key(workflow.dag.needrun_jobs())
    if key_env:
        raise WorkflowError(
            f"{CONFIG_FILES[0]}: judge.api_key_env: the environment variable {key_env} "
            "is not set; export it before running (the key is never read from config)"
        )


# ---- secondary judges (rules/judging.smk: judge_secondary, judge_agreement, judge_robustness)
import dataclasses

from workflow_scripts.core.io_utils import InputError
from workflow_scripts.judging.secondary import secondary_judges

try:
    SECONDARY_JUDGES = secondary_judges(config)
except InputError as err:
    raise ConfigError(f"{CONFIG_FILES[0]}: {err}") from None


def secondary_judge_names():
    """The wildcard pattern of a secondary judge's name (none: matches nothing)."""
    return "|".join(re.escape(name) for name in SECONDARY_JUDGES) or "(?!)"


def _secondary(wildcards):
    judge = SECONDARY_JUDGES[wildcards.judge]
    return judge, judge_kind(judge.judge["kind"])


def secondary_judge_settings(wildcards):
    """The settings the judge's kind reads (no secret: the key stays in the environment)."""
    judge, kind = _secondary(wildcards)
    return kind.used_settings(judge.settings().public())


def secondary_subsample(wildcards):
    return dataclasses.asdict(SECONDARY_JUDGES[wildcards.judge].subsample)


def secondary_judge_inputs(wildcards):
    judge, kind = _secondary(wildcards)
    if kind.serves_config_model(judge.judge, config["models"]):
        return {"judge_model": model_dir(judge.judge["model"])}
    return {}


def secondary_judge_env(wildcards):
    return f"../envs/{_secondary(wildcards)[1].env}.yaml"


def _secondary_gpus(name):
    judge = SECONDARY_JUDGES[name]
    gpus = judge.judge.get("gpus")
    return gpus if gpus is not None else judge_kind(judge.judge["kind"]).gpus


def _secondary_internet(name):
    return int(judge_kind(SECONDARY_JUDGES[name].judge["kind"]).internet)


def _per_secondary_judge(value, none):
    """A constant where every secondary judge has the same value (so the profiles and
    their checks see a plain number), else a function of the judge wildcard."""
    values = {value(name) for name in SECONDARY_JUDGES}
    if len(values) <= 1:
        return values.pop() if values else none
    return lambda wc: value(wc.judge)


def secondary_judge_gpus():
    return _per_secondary_judge(_secondary_gpus, 0)


def secondary_judge_internet():
    # none configured: as the full study's API judge, on a partition with internet
    return _per_secondary_judge(_secondary_internet, 1)


def secondary_judge_threads():
    # as judge_threads: a core for a remote judge, more for a model in the job
    return _per_secondary_judge(lambda name: 1 if _secondary_internet(name) else 4, 1)


def secondary_judge_mem():
    """As judge_mem: a remote judge's memory never grows; a model in the job gets more
    on each retry."""
    remote = {_secondary_internet(name) for name in SECONDARY_JUDGES}
    if remote <= {1}:
        return 4_000
    if remote == {0}:
        return gpu_mem(16_000)
    return lambda wc, attempt: (
        4_000 if _secondary_internet(wc.judge) else 16_000 * attempt
    )


def secondary_judged_files(judge):
    return [
        JUDGED_BY.format(model=m, judge=judge, persona=p, dataset=d)
        for m, p, d in GRID.judged_cells()
    ]


def judge_agreement_inputs(wildcards):
    return {
        "primary": judged_files(),
        "secondary": secondary_judged_files(wildcards.judge),
    }


def judge_agreement_settings(wildcards=None):
    return {
        "min_answers": config["judges"]["agreement_min_answers"],
        "misaligned_below": config["statistics"]["misaligned_below"],
        "coherent_above": config["statistics"]["coherent_above"],
    }


def judge_robustness_inputs(wildcards):
    return {
        "answers": ANSWERS,
        "hypotheses": table_path("hypotheses"),
        "persona_check": persona_check_tables(),
        "secondary": [f for j in SECONDARY_JUDGES for f in secondary_judged_files(j)],
    }


def judge_robustness_files(wildcards=None):
    """Secondary judge -> its judged files (the robustness job groups its inputs by)."""
    return {j: secondary_judged_files(j) for j in SECONDARY_JUDGES}


def judges_targets():
    """The agreement tables and the robustness table, when secondary judges are set
    (the grid's own answers only: an import has no samples to judge again)."""
    if not SECONDARY_JUDGES or IMPORTING:
        return []
    return [JUDGE_AGREEMENT.format(judge=j) for j in SECONDARY_JUDGES] + [
        JUDGE_ROBUSTNESS
    ]


def missing_secondary_judge_key(jobs):
    """The API key variable a remote secondary judge needs, if its jobs are due and it is unset."""
    due = {
        job.wildcards.get("judge") for job in jobs if job.rule.name == "judge_secondary"
    }
    for name in sorted(j for j in due if j):
        judge, kind = SECONDARY_JUDGES[name], judge_kind(
            SECONDARY_JUDGES[name].judge["kind"]
        )
        key_env = judge.settings().api_key_env
        if kind.api_key and key_env and not os.environ.get(key_env):
            return key_env
    return None


# ---- stats (rules/stats.smk)
from workflow_scripts.stats.outputs import ANSWERS as ANSWERS_INPUT
from workflow_scripts.stats.outputs import CAPTIONS as FIGURE_CAPTIONS
from workflow_scripts.core.report_graph import use_in_report as use_rule_graph_in_report
from workflow_scripts.stats.outputs import (
    FIGURES,
    FIRST_STUDY_TABLES,
    REPORT_CATEGORIES,
    RESULTS_CATEGORY,
    TABLES,
)
from workflow_scripts.stats.settings import settings_from_config

try:
    STATS_SETTINGS = settings_from_config(
        config["statistics"],
        MODELS,
        PERSONAS,
        DATASETS,
        where=", ".join(CONFIG_FILES),
        roles={d: entry["role"] for d, entry in config.get("datasets", {}).items()},
        seeds=SEEDS,
        samples_per_question=config["sampling"]["n"],
    ).to_dict()
except ValueError as err:
    raise ConfigError(str(err)) from None


def judged_files():
    return [
        JUDGED.format(model=m, persona=p, dataset=d) for m, p, d in GRID.judged_cells()
    ]


def answer_inputs(wildcards):
    """The judged answers: this grid's, or the first study's when importing."""
    return imported_answer_inputs() if IMPORTING else judged_files()


def persona_check_tables():
    """The persona checks the verdicts are gated by: one per model where the grid has
    personas with adapters and produces its own answers (an import has none)."""
    if not PERSONAS_WITH_ADAPTER or IMPORTING:
        return []
    return [PERSONA_CHECK.format(model=m) for m in MODELS]


def statistics_inputs(wildcards):
    """The answers and persona checks; when importing, the imported study's design
    (the conditions it planned: RESULTS.md lists only those as missing)."""
    inputs = {"answers": ANSWERS, "persona_check": persona_check_tables()}
    if IMPORTING:
        inputs["design"] = IMPORTED_DESIGN
    return inputs


def stats_settings(wildcards=None):
    return STATS_SETTINGS


def expected_conditions(wildcards=None):
    """Every condition the grid should produce (RESULTS.md lists the missing ones)."""
    return [{"model": m, "persona": p, "dataset": d} for m, p, d in GRID.judged_cells()]


def table_path(name):
    return TABLE_FILE.format(name=name)


def table_outputs():
    """Named outputs of rule `statistics` (the report shows them as the HTML pages of
    rule `report_pages`)."""
    return {name: table_path(name) for name in TABLES}


def figure_path(name):
    return FIGURE_FILE.format(figure=name)


def figure_inputs(wildcards):
    """Only what this figure is drawn from: its tables, or the answers."""
    return {
        name: ANSWERS if name == ANSWERS_INPUT else table_path(name)
        for name in FIGURES[wildcards.figure]
    }


def figure_caption(wildcards):
    return FIGURE_CAPTIONS[wildcards.figure]


def figure_category(wildcards):
    """The report's category of a figure (stats/outputs.py, REPORT_CATEGORIES)."""
    return REPORT_CATEGORIES[wildcards.figure]


def results_report_inputs(wildcards):
    """Tables and figures; when importing, the reproduction section is appended."""
    inputs = {name: table_path(name) for name in TABLES}
    inputs["figures"] = [figure_path(f) for f in FIGURES]
    if IMPORTING:
        inputs["extra"] = REPRODUCTION["report"]
        inputs["extra_findings"] = REPRODUCTION["findings"]
    if H4_ON:
        inputs["h4_tests"] = table_path("h4_tests")
    if judges_targets():
        inputs["judges"] = JUDGE_ROBUSTNESS
        inputs["agreement"] = [
            JUDGE_AGREEMENT.format(judge=j) for j in SECONDARY_JUDGES
        ]
    if H3_ON:
        inputs["h3_tests"] = table_path("h3_tests")
    if SELF_KNOWLEDGE_ON:
        inputs.update(
            {f"sk_{name}": table_path(name) for name in SELF_KNOWLEDGE_TABLES}
        )
    return inputs


def final_targets(wildcards=None):
    targets = [ANSWERS, *(table_path(n) for n in TABLES)]
    targets += [figure_path(f) for f in FIGURES]
    targets.append(RESULTS_MD)
    targets += persona_check_tables()
    targets += first_study_targets()
    targets += h4_targets()
    targets += judges_targets()
    targets += h3_targets()
    targets += self_knowledge_targets()
    return targets + report_page_targets()


# ---- first study (rules/first_study.smk)
from workflow_scripts.first_study.outputs import FILES as REPRODUCTION_FILES
from workflow_scripts.first_study.outputs import (
    STATISTICS_TABLES as REPRODUCTION_STATISTICS_TABLES,
)

FIRST_STUDY = config.get("first_study") or {}
IMPORTING = bool(FIRST_STUDY.get("archive") or FIRST_STUDY.get("directory"))


def _check_first_study():
    """Parse-time checks of `first_study` (cheap: paths and names only)."""
    where = ", ".join(CONFIG_FILES)
    if FIRST_STUDY.get("archive") and FIRST_STUDY.get("directory"):
        raise ConfigError(
            f"{where}: first_study: set `archive` or `directory`, not both"
        )
    key = "archive" if FIRST_STUDY.get("archive") else "directory"
    if not Path(FIRST_STUDY[key]).exists():
        raise ConfigError(
            f"{where}: first_study.{key}: not found: {FIRST_STUDY[key]} "
            f"(relative to the working directory {Path.cwd()})"
        )
    mapped = [FIRST_STUDY["default_model"], *FIRST_STUDY["model_by_directory"].values()]
    for model in mapped:
        if model not in config["models"]:
            raise ConfigError(
                f"{where}: first_study: model '{model}' is not a model in `models`"
            )


if IMPORTING:
    _check_first_study()


def first_study_source(wildcards):
    """The archive or directory the judge-run files are read from."""
    if not IMPORTING:
        raise WorkflowError(
            "importing the first study needs first_study.archive or first_study.directory "
            "in the config (see config/first_study.yaml)"
        )
    return FIRST_STUDY.get("archive") or FIRST_STUDY["directory"]


def first_study_import_settings(wildcards):
    return {
        "first_study": dict(FIRST_STUDY),
        "personas": PERSONAS,
        "datasets": DATASETS,
    }


def first_study_report_settings(wildcards):
    return {
        "statistics": STATS_SETTINGS,
        "policy": FIRST_STUDY["policy"],
        "default_dataset": FIRST_STUDY["default_dataset"],
        "persona_effect_personas": FIRST_STUDY.get("persona_effect_personas"),
    }


def first_study_reproduction_inputs(wildcards):
    """Every judge run, the answers the statistics analysed, and their tables."""
    return {
        "runs": IMPORTED_RUNS,
        "answers": ANSWERS,
        **{name: table_path(name) for name in REPRODUCTION_STATISTICS_TABLES},
    }


def imported_answer_inputs(wildcards=None):
    """The judged answers of an import-only run (what answer_inputs returns when
    first_study is configured)."""
    return [IMPORTED_ANSWERS]


def first_study_targets():
    """The reproduction section and its tables, when importing."""
    return list(REPRODUCTION.values()) if IMPORTING else []


# ---- the report's pages (rule report_pages)
def report_table_sources():
    """Every table the report shows, by page name: the statistics tables, and the first
    study's when importing."""
    sources = {name: table_path(name) for name in TABLES}
    if IMPORTING:
        sources.update(
            {
                name: FIRST_STUDY_TABLE_FILE.format(name=name)
                for name in FIRST_STUDY_TABLES
            }
        )
    return sources


def report_table_names(wildcards=None):
    return list(report_table_sources())


def report_pages_inputs(wildcards):
    return {
        "results": RESULTS_MD,
        "figures": [figure_path(f) for f in FIGURES],
        **report_table_sources(),
    }


def table_page_outputs():
    """The named outputs of `report_pages`, one HTML page per table, each in the
    report's category of its part of the study."""
    return {
        name: report(
            TABLE_PAGE.format(name=name),
            caption="../report/table.rst",
            category=REPORT_CATEGORIES[name],
            subcategory="Tables",
            labels={"table": name},
        )
        for name in report_table_sources()
    }


def report_page_targets():
    return [
        RESULTS_HTML,
        FINDINGS_HTML,
        *(TABLE_PAGE.format(name=n) for n in report_table_sources()),
    ]


# ---- GPUs per job (a model's `gpus`: all on one node)
def gpus_of(name):
    return int(config["models"][name].get("gpus", 1))


def model_gpus(wildcards):
    """GPUs of a job that loads the grid model `{model}` (its persona model, EM
    adapters): the model's `gpus`, on one node (rules also ask for `nodes=1`)."""
    return gpus_of(wildcards.model)


def teacher_gpus(wildcards):
    return gpus_of(helper_model("teacher_model") or wildcards.model)


def generator_gpus(wildcards):
    name = (
        helper_model("generator_model")
        or helper_model("teacher_model")
        or wildcards.model
    )
    return gpus_of(name)


# ---- H4, the EM direction (rules/h4.smk)
from workflow_scripts.h4.outputs import FIGURES as H4_FIGURES
from workflow_scripts.h4.outputs import TABLES as H4_TABLES

H4 = config["h4"]
H4_ON = bool(H4["enabled"]) and not IMPORTING
H4_DATASETS = [d for d in DATASETS if config["datasets"][d]["role"] == "em"]
H4_TEST_SCALE = H4["test_scale"] if H4["test_scale"] is not None else max(H4["scales"])
if H4["test_scale"] is not None and float(H4["test_scale"]) not in map(
    float, H4["scales"]
):
    raise ConfigError(
        f"{', '.join(CONFIG_FILES)}: h4.test_scale: {H4['test_scale']} is not one of "
        f"h4.scales {H4['scales']}"
    )


def h4_cells():
    """(model, persona, dataset, seed) of every EM run H4 reads a direction from."""
    return [
        (m, p, d, s)
        for m in MODELS
        for p in PERSONAS
        for d in H4_DATASETS
        for s in SEEDS
    ]


def h4_direction_files(model, persona, dataset, seed):
    keys = dict(model=model, persona=persona, dataset=dataset, seed=seed)
    return H4_DIRECTION.format(**keys), H4_DIRECTION_SUMMARY.format(**keys)


def h4_extraction_settings(wildcards):
    return {k: H4[k] for k in ("batch_size", "max_length", "dtype")}


def h4_direction_settings(wildcards):
    stats = config["statistics"]
    return {
        "misaligned_below": stats["misaligned_below"],
        "coherent_above": stats["coherent_above"],
        "seed": stats["seed"],
        **{k: H4[k] for k in ("aligned_above", "min_answers", "bootstrap")},
    }


def h4_sampling_settings(wildcards):
    """The study's sampling settings with H4's own n, batch size and dtype (the H4 jobs
    always run the transformers engine: vLLM has no activation hooks)."""
    sampling = config["sampling"]
    return {
        **{k: sampling[k] for k in ("temperature", "top_p", "max_new_tokens", "seed")},
        **{k: H4[k] for k in ("n", "batch_size", "dtype")},
    }


def _h4_direction_inputs(model, personas_seeds, dataset):
    files = [h4_direction_files(model, p, dataset, s) for p, s in personas_seeds]
    return {"vectors": [v for v, _ in files], "summaries": [j for _, j in files]}


def h4_steer_inputs(wildcards):
    """The reference persona's directions of this dataset, every seed (the first one
    that is not skipped steers)."""
    pairs = [(REFERENCE_PERSONA, s) for s in SEEDS]
    return _h4_direction_inputs(wildcards.model, pairs, wildcards.dataset)


def h4_steer_settings(wildcards):
    return {
        "reference": REFERENCE_PERSONA,
        "seeds": SEEDS,
        "layer": H4["layer"],
        "scales": H4["scales"],
    }


def h4_ablation_sources(wildcards):
    """Personas whose direction is projected out of this persona+EM model: its own and
    the reference's, or every persona's (h4.cross_ablation: all)."""
    if H4["cross_ablation"] == "all":
        return list(PERSONAS)
    return list(dict.fromkeys([wildcards.persona, REFERENCE_PERSONA]))


def h4_ablate_inputs(wildcards):
    pairs = [(p, int(wildcards.seed)) for p in h4_ablation_sources(wildcards)]
    return _h4_direction_inputs(wildcards.model, pairs, wildcards.dataset)


def h4_ablate_settings(wildcards):
    return {"sources": h4_ablation_sources(wildcards), "layers": H4["ablation_layers"]}


def h4_judged_dataset(wildcards):
    """The dataset value of the answers: none for steered persona models without EM,
    the EM dataset for ablated persona+EM models."""
    parts = wildcards.h4run.split(os.sep)
    return NO_EM if parts[0] == "steer" else parts[2]


def h4_judged(samples_pattern, **keys):
    return samples_pattern.format(**keys).replace(".samples.parquet", ".judged.parquet")


def h4_analysis_keys(wildcards=None):
    return {
        "directions": [list(c) for c in h4_cells()],
        "steered": [[m, p, d] for m in MODELS for p in PERSONAS for d in H4_DATASETS],
        "ablated": [list(c) for c in h4_cells()],
    }


def h4_analysis_inputs(wildcards):
    keys = h4_analysis_keys()
    files = [h4_direction_files(*c) for c in h4_cells()]
    return {
        "vectors": [v for v, _ in files],
        "summaries": [j for _, j in files],
        "steered": [
            h4_judged(H4_STEER_SAMPLES, model=m, persona=p, dataset=d)
            for m, p, d in keys["steered"]
        ],
        "ablated": [
            h4_judged(H4_ABLATE_SAMPLES, model=m, persona=p, dataset=d, seed=s)
            for m, p, d, s in keys["ablated"]
        ],
    }


def h4_test_settings(wildcards=None):
    stats = config["statistics"]
    return {
        "reference_persona": REFERENCE_PERSONA,
        "test_scale": float(H4_TEST_SCALE),
        **{
            k: stats[k]
            for k in (
                "bootstrap_resamples",
                "seed",
                "alpha",
                "misaligned_below",
                "coherent_above",
            )
        },
    }


def h4_table_outputs():
    return {name: table_path(name) for name in H4_TABLES}


def h4_targets():
    """The H4 tables and figures, when h4.enabled (never for an import)."""
    if not H4_ON:
        return []
    figures = [H4_FIGURE.format(name=n) for n in H4_FIGURES]
    return [*h4_table_outputs().values(), *figures]


# ---- H3, when EM sets in (rules/h3.smk)
from workflow_scripts.h3.outputs import FIGURES as H3_FIGURES
from workflow_scripts.h3.outputs import TABLES as H3_TABLES

H3 = config["h3"]
H3_ON = bool(H3["enabled"]) and not IMPORTING
H3_DATASETS = [d for d in DATASETS if config["datasets"][d]["role"] == "em"]


def h3_runs_of_persona(wildcards):
    """The EM runs of one persona H3 samples: dataset, seed and analysis checkpoints."""
    return [
        {
            "dataset": d,
            "seed": s,
            "analysis_dir": EM_ANALYSIS_CHECKPOINTS.format(
                model=wildcards.model, persona=wildcards.persona, dataset=d, seed=s
            ),
        }
        for d in H3_DATASETS
        for s in SEEDS
    ]


def h3_analysis_dirs_of_persona(wildcards):
    return [run["analysis_dir"] for run in h3_runs_of_persona(wildcards)]


def h3_sampling_settings(wildcards):
    """The study's sampling settings (engine, temperature, ...) with H3's own n."""
    return {**sampling_settings(wildcards), "n": H3["n"]}


def h3_analysis_keys(wildcards=None):
    return {
        "judged": [[m, p, d] for m in MODELS for p in PERSONAS for d in H3_DATASETS],
        "runs": [
            [m, p, d, s]
            for m in MODELS
            for p in PERSONAS
            for d in H3_DATASETS
            for s in SEEDS
        ],
    }


def h3_analysis_inputs(wildcards):
    keys = h3_analysis_keys()
    runs = [dict(model=m, persona=p, dataset=d, seed=s) for m, p, d, s in keys["runs"]]
    return {
        "judged": [
            H3_JUDGED.format(model=m, persona=p, dataset=d)
            for m, p, d in keys["judged"]
        ],
        "curves": [H3_CURVES.format(**r) for r in runs],
        "summaries": [H3_CURVES_SUMMARY.format(**r) for r in runs],
    }


def h3_test_settings(wildcards=None):
    stats = config["statistics"]
    return {
        "reference_persona": REFERENCE_PERSONA,
        "bootstrap": H3["bootstrap"],
        "seed": stats["seed"],
        "alpha": stats["alpha"],
        "min_rise": H3["min_rise"],
        "misaligned_below": stats["misaligned_below"],
        "coherent_above": stats["coherent_above"],
    }


def h3_table_outputs():
    return {name: table_path(name) for name in H3_TABLES}


def h3_targets():
    """The H3 tables and figures, when h3.enabled (never for an import)."""
    if not H3_ON:
        return []
    figures = [H3_FIGURE.format(name=n) for n in H3_FIGURES]
    return [*h3_table_outputs().values(), *figures]
# ---- self-knowledge battery (rules/self_knowledge.smk)
from workflow_scripts.self_knowledge.outputs import FIGURES as SELF_KNOWLEDGE_FIGURES
from workflow_scripts.self_knowledge.outputs import TABLES as SELF_KNOWLEDGE_TABLES

SELF_KNOWLEDGE = config["self_knowledge"]
SELF_KNOWLEDGE_ON = bool(SELF_KNOWLEDGE["enabled"]) and not IMPORTING
SELF_KNOWLEDGE_ENV = SAMPLING_ENV  # the battery runs on the sampling engine


def _self_knowledge_items_path():
    """The items file: relative to the working directory, else the one this workflow
    ships (a run in another directory still finds the project's own items)."""
    path = Path(SELF_KNOWLEDGE["items"]["path"])
    if path.is_absolute() or path.exists() or not (REPO / path).exists():
        return str(path)
    return str(REPO / path)


SELF_KNOWLEDGE_ITEMS = _self_knowledge_items_path()
SELF_KNOWLEDGE_SCORE_KEYS = (
    "self_assessment",
    "description_pairs",
    "answers_per_question",
    "min_mass",
    "batch_size",
    "dtype",
)


def _check_self_knowledge_items():
    """The items file is validated while the workflow is parsed (ids unique, pairs
    complete and matched, templates with their fields, the selected ids known, the
    pinned sha256), so a bad file stops the run before any job starts."""
    from workflow_scripts.core.hashing import sha256_file
    from workflow_scripts.core.io_utils import InputError
    from workflow_scripts.self_knowledge.items import parse_items

    path = SELF_KNOWLEDGE_ITEMS
    if not Path(path).exists():
        raise ConfigError(f"self_knowledge.items.path: file not found: {path}")
    expected = SELF_KNOWLEDGE["items"].get("sha256")
    if expected and sha256_file(path) != expected:
        raise ConfigError(
            f"self_knowledge.items.sha256: {path} has sha256 {sha256_file(path)}; "
            f"expected {expected} (a changed file needs its new hash in the config)"
        )
    try:
        parse_items(path).select(
            SELF_KNOWLEDGE["self_assessment"],
            SELF_KNOWLEDGE["description_pairs"],
            "self_knowledge",
        )
    except InputError as err:
        raise ConfigError(str(err)) from None


if SELF_KNOWLEDGE_ON:
    _check_self_knowledge_items()


def self_knowledge_judged(wildcards):
    """This persona model's judged answers, every dataset (the no-EM control included):
    its own answers for recognition and score prediction, and its partners'."""
    return [
        JUDGED.format(model=m, persona=p, dataset=d)
        for m, p, d in GRID.judged_cells()
        if m == wildcards.model and p == wildcards.persona
    ]


def self_knowledge_score_settings(wildcards=None):
    """The battery's items (by id, with the file's sha256) and scoring settings, on the
    study's sampling engine (with its vLLM block where that engine is vLLM)."""
    settings = {key: SELF_KNOWLEDGE[key] for key in SELF_KNOWLEDGE_SCORE_KEYS}
    settings["sha256"] = SELF_KNOWLEDGE["items"].get("sha256")
    settings["engine"] = config["sampling"]["engine"]
    if settings["engine"] == "vllm":
        settings["vllm"] = dict(config["sampling"].get("vllm") or {})
    return settings


def self_knowledge_score_files(wildcards=None):
    return [
        SELF_KNOWLEDGE_SCORES.format(model=m, persona=p)
        for m in MODELS
        for p in PERSONAS
    ]


def self_knowledge_summary_settings(wildcards=None):
    stats = config["statistics"]
    return {
        "reference_persona": REFERENCE_PERSONA,
        "em_datasets": [d for d in DATASETS if config["datasets"][d]["role"] == "em"],
        "behaviour_threshold": SELF_KNOWLEDGE["behaviour_threshold"],
        "self_report_threshold": SELF_KNOWLEDGE["self_report_threshold"],
        "bootstrap_resamples": SELF_KNOWLEDGE["bootstrap_resamples"],
        **{
            k: stats[k] for k in ("seed", "alpha", "misaligned_below", "coherent_above")
        },
    }


def self_knowledge_table_outputs():
    return {name: table_path(name) for name in SELF_KNOWLEDGE_TABLES}


def self_knowledge_targets():
    """The self-knowledge tables and figures, when self_knowledge.enabled (never for an
    import: an imported study has no models to ask)."""
    if not SELF_KNOWLEDGE_ON:
        return []
    figures = [SELF_KNOWLEDGE_FIGURE.format(name=n) for n in SELF_KNOWLEDGE_FIGURES]
    return [*self_knowledge_table_outputs().values(), *figures]
