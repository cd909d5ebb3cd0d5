"""The schema's defaults are the defaults: settings objects built without a config
carry exactly the values a validated config would get."""

import dataclasses

import pytest

from workflow_scripts.core.defaults import schema_defaults
from workflow_scripts.em.training import EmTrainSettings
from workflow_scripts.h4.directions import DirectionSettings
from workflow_scripts.judging.settings import JudgeSettings
from workflow_scripts.judging.subsample import Subsample
from workflow_scripts.persona.check import CheckSettings
from workflow_scripts.persona.training import LoraTrainSettings
from workflow_scripts.stats.settings import settings_from_config

SETTINGS = [
    (JudgeSettings, "judge", {"kind": "local", "model": "m"}),
    (CheckSettings, "persona_check", {}),
    (LoraTrainSettings, "persona_training.dpo", {}),
    (EmTrainSettings, "em_training", {}),
    (DirectionSettings, "h4", {}),
    (Subsample, "judges.subsample", {}),
]


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize(("cls", "section", "required"), SETTINGS, ids=[s[1] for s in SETTINGS])
def test_settings_defaults_are_the_schemas(cls, section, required):
    defaults = schema_defaults(section)
    built = cls(**required)
    shared = [f.name for f in dataclasses.fields(cls) if f.name in defaults and f.name not in required]
    assert shared, f"{cls.__name__} shares no key with the schema's {section}"
    for name in shared:
        if defaults[name] is None and name == "trait_prompts":
            continue  # null in config: the built-in probe prompts
        assert _plain(getattr(built, name)) == defaults[name], f"{section}.{name}"


def test_statistics_settings_take_the_schemas_defaults():
    defaults = schema_defaults("statistics")
    settings = settings_from_config({}, personas=["baseline"]).to_dict()
    assert settings["bootstrap_resamples"] == defaults["bootstrap_resamples"]
    assert settings["alpha"] == defaults["alpha"]


def test_an_unknown_section_is_named(tmp_path):
    with pytest.raises(KeyError, match=r"no config key 'judge\.nope'"):
        schema_defaults("judge.nope")


def test_default_hypotheses_and_medical_pair_fit_a_smaller_grid():
    from workflow_scripts.core.config_checks import fit_statistics_defaults_to_grid

    config = {"personas": {"baseline": {}, "goodness": {}}, "datasets": {"risky": {}}}
    fit_statistics_defaults_to_grid(config)
    hypotheses = config["statistics"]["hypotheses"]
    assert {name: entry["personas"] for name, entry in hypotheses.items()} == {"H2": ["goodness"]}
    assert config["statistics"]["medical_pair"] is None


def test_hypotheses_written_in_a_config_are_left_for_the_check():
    from workflow_scripts.core.config_checks import fit_statistics_defaults_to_grid

    written = {"H9": {"personas": ["humour"], "direction": "higher"}}
    config = {"personas": {"baseline": {}}, "statistics": {"hypotheses": written}}
    fit_statistics_defaults_to_grid(config)
    assert config["statistics"]["hypotheses"] == written
