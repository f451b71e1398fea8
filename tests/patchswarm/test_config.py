"""Config resolution (preset → YAML → overrides), errors that name the key, the result hash, `describe`."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from patchswarm.config import PRESETS, ConfigError, PatchswarmConfig, describe, load_config, parse_override


def test_resolution_order_preset_then_file_then_overrides(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("trajectories:\n  num_tests: 5\n  num_edits: 6\nworkers: 3\n")
    config = load_config("codemonkeys", path, ["trajectories.num_edits=7", "selection.top_k=2"])
    assert config.trajectories.num_tests == 5          # file over preset
    assert config.trajectories.num_edits == 7          # override over file
    assert config.trajectories.max_attempts_editing == 8  # preset kept where nothing else speaks
    assert config.selection.top_k == 2 and config.workers == 3
    assert config.context.token_budget == PRESETS["codemonkeys"]["context"]["token_budget"]


def test_one_role_override_keeps_the_other_roles():
    config = load_config(overrides=["models.roles.primary=scripted/x"])
    assert config.models.roles.primary == "scripted/x"
    assert config.models.roles.relevance == PatchswarmConfig().models.roles.relevance
    assert config.models.roles.selector == PatchswarmConfig().models.roles.selector


def test_override_values_are_yaml():
    config = load_config(overrides=[
        "models.price_overrides={'scripted/x': {input_per_mtok: 1.5, output_per_mtok: 2}}",
        "selection.selector_enabled=false", "budget.max_cost_usd=0.25", "selection.regression_cmd=pytest -x -q"])
    assert config.models.price_overrides["scripted/x"].input_per_mtok == 1.5
    assert config.selection.selector_enabled is False
    assert config.budget.max_cost_usd == 0.25
    assert config.selection.regression_cmd == "pytest -x -q"
    assert parse_override("a.b=") == (["a", "b"], "")


@pytest.mark.parametrize(("override", "message"), [
    ("trajectories.num_edit=3", "unknown config key 'trajectories.num_edit'; did you mean 'trajectories.num_edits'?"),
    ("models.roles.primry=x", "unknown config key 'models.roles.primry'; did you mean 'models.roles.primary'?"),
    ("sandbox.limits.cpu=2", "unknown config key 'sandbox.limits.cpu'; did you mean 'sandbox.limits.cpus'?"),
    ("selection.topk=2", "unknown config key 'selection.topk'; did you mean 'selection.top_k'?"),
    ("wokers=2", "unknown config key 'wokers'; did you mean 'workers'?"),
    ("zzzzzz=1", "unknown config key 'zzzzzz'"),
    ("trajectories.num_edits=-1", "config key 'trajectories.num_edits': Input should be greater than or equal to 0"),
    ("sandbox.pool_size=many", "config key 'sandbox.pool_size': Input should be a valid integer"),
    ("trajectories.num_edits", "override 'trajectories.num_edits' must look like key=value"),
])
def test_bad_overrides_say_which_key(override, message):
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=[override])
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("section", ["", "models", "models.roles", "context", "trajectories", "trajectories.adaptive",
                                     "trajectories.adaptive.stopping", "selection", "sandbox", "sandbox.limits",
                                     "budget"])
def test_every_config_section_refuses_unknown_keys_itself(section):
    parts = [part for part in section.split(".") if part]
    data: dict = {}
    nested = data
    for part in parts:
        nested = nested.setdefault(part, {})
    nested["typo_key"] = 1
    with pytest.raises(ValidationError) as caught:
        PatchswarmConfig.model_validate(data)
    assert ("extra_forbidden", (*parts, "typo_key")) in [(e["type"], e["loc"]) for e in caught.value.errors()]


def test_a_misspelt_key_deep_in_a_config_file_is_named(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("trajectories:\n  adaptive:\n    stopping:\n      min_sample: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path=path)
    assert str(caught.value) == ("unknown config key 'trajectories.adaptive.stopping.min_sample'; "
                                 "did you mean 'trajectories.adaptive.stopping.min_samples'?")


def test_bad_files_and_presets(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'fast'; choose one of default, codemonkeys"):
        load_config("fast")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(path=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trajectories: [1,\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(path=bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(path=bad)


def test_result_hash_follows_what_changes_results():
    base = load_config().result_hash()
    assert load_config().result_hash() == base
    same = ["workers=8", "budget.max_cost_usd=3", "sandbox.pool_size=9", "models.max_concurrency=50",
            "models.max_retries=1", "models.request_timeout_s=5", "selection.cache_dir=/tmp/elsewhere"]
    for override in same:
        assert load_config(overrides=[override]).result_hash() == base, override
    different = ["trajectories.num_edits=3", "models.roles.primary=scripted/other", "context.token_budget=1000",
                 "selection.top_k=1", "models.temperatures.primary=0.2"]
    hashes = {load_config(overrides=[override]).result_hash() for override in different}
    assert base not in hashes and len(hashes) == len(different)


def test_describe_is_commented_yaml_that_loads_back(tmp_path):
    config = load_config("codemonkeys", overrides=[
        "models.price_overrides={'scripted/x': {input_per_mtok: 1.5, output_per_mtok: 2}}", "workers=4"])
    text = describe(config)
    lines = text.splitlines()
    at = lines.index("  num_edits: 10")
    assert lines[at - 1] == "  # Editing trajectories, each seeded by one reproduction test."
    assert "# Instances solved concurrently in a batch." in lines
    assert "      input_per_mtok: 1.5" in lines
    path = tmp_path / "shown.yaml"
    path.write_text(text)
    assert load_config(path=path) == config
    assert yaml.safe_load(text)["workers"] == 4
