"""Experiment files (`--config exp.toml`): what they plan, and one line naming the file, key and reason when bad."""

from __future__ import annotations

import json
import sys

import pytest

from plugin_fixtures import install_fake_plugin

EXPERIMENT = """
[plan]
methods = ["map", "mc-dropout"]
tasks = ["two-moons", "toy-regression"]
seeds = 2

[set]
epochs = 2
batch_size = 64

[set.mc-dropout]
p = 0.2

[set.toy-regression]
epochs = 3

[set.toy-regression.mc-dropout]
samples = 7
"""


def _dry(cli, *args) -> list[dict]:
    result = cli(*args, "--dry-run", *(["--format", "json"] if args[0] == "compare" else ["--json"]))
    assert result.exit_code == 0, result.output
    return [run["key"] for run in json.loads(result.stdout)]


def test_compare_config_plans_methods_tasks_seeds_and_scoped_settings(cli, tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(EXPERIMENT)
    keys = _dry(cli, "compare", "--config", path)
    assert [(k["task"], k["method"], k["seed"]) for k in keys] == [
        (t, m, s) for t in ("two-moons", "toy-regression") for m in ("map", "mc-dropout") for s in (0, 1)]
    by = {(k["task"], k["method"]): k for k in keys}
    assert by["two-moons", "map"]["recipe"]["epochs"] == 2 and by["toy-regression", "map"]["recipe"]["epochs"] == 3
    assert by["two-moons", "mc-dropout"]["method_config"]["p"] == 0.2
    assert by["two-moons", "mc-dropout"]["method_config"]["samples"] == 50
    assert by["toy-regression", "mc-dropout"]["method_config"]["samples"] == 7
    assert by["toy-regression", "mc-dropout"]["method_config"]["p"] == 0.2
    # the command line beats the file
    keys = _dry(cli, "compare", "--config", path, "--tasks", "two-moons", "--seeds", "1", "--set", "epochs=4")
    assert {(k["task"], k["seed"], k["recipe"]["epochs"]) for k in keys} == {("two-moons", 0, 4)}


def test_run_config_takes_the_settings_and_a_single_method_and_task(cli, tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(EXPERIMENT)
    (key,) = _dry(cli, "run", "mc-dropout", "--task", "toy-regression", "--config", path, "--seeds", "1")
    assert key["method_config"]["samples"] == 7 and key["recipe"]["epochs"] == 3
    single = tmp_path / "single.toml"
    single.write_text('[plan]\nmethods = ["map"]\ntasks = ["two-moons"]\n[set]\nepochs = 1\n')
    result = cli("run", "--config", single, "--out", tmp_path / "out", "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["key"]["recipe"]["epochs"] == 1


BAD = [
    ("[plan]\nseeds = 'three'\n", "plan.seeds: expected a positive integer; got 'three'"),
    ("[plan]\nmethod = ['map']\n", "plan.method: unknown key; expected one of suite, methods"),
    ("[plan]\ntasks = 'two-moons'\n", "plan.tasks: expected a non-empty list of names; got 'two-moons'"),
    ("[plan]\nsplits = 0\n", "plan.splits: expected a positive integer; got 0"),
    ("[plans]\n", "unknown table or key 'plans'; expected: plan, set"),
    ("[set]\nepochs = '10'\n", "set.epochs: 'epochs' of the training recipe must be an integer; got '10'"),
    ("[set]\nepochs = 1.5\n", "set.epochs: 'epochs' of the training recipe must be an integer; got 1.5"),
    ("[set]\nlr = -1.0\n", "set.lr: 'lr' of the training recipe must be non-negative; got -1.0"),
    ("[set]\nlr = true\n", "set.lr: 'lr' of the training recipe must be a float; got True"),
    ("[set]\nlr = inf\n", "set.lr: 'lr' of the training recipe must be non-negative; got inf"),
    ("[set]\nlrr = 0.1\n", "set.lrr: no planned run has a key 'lrr'"),
    ("[set]\nlr = [0.1, 0.2]\n", "set.lr: expected a single value; got [0.1, 0.2]"),
    ("[set.mapp]\nlr = 0.1\n", "set.mapp.lr: 'mapp' is neither a part"),
    ("[set.map.laplace]\nlr = 0.1\n", "set.map.laplace.lr: two method names"),
    ("[set]\narch = 'vit'\n", "set.arch: 'arch' of the backbone must be one of"),
    ("[set\nlr = 1\n", "not valid TOML"),
    ("set = 3\n", "set: expected a table; got 3"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_a_bad_file_is_one_line_naming_the_file_the_key_and_the_reason(cli, tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = cli("compare", "--config", path, "--tasks", "two-moons", "--methods", "map", "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {path}") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_binary_file_is_refused(cli, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\xff\xfe\x00binary")
    result = cli("run", "map", "--task", "two-moons", "--config", path)
    assert result.exit_code == 2 and result.stderr == f"error: {path}: not a UTF-8 text file\n"


def test_a_plugin_method_appears_in_compare_without_an_edit(cli, tmp_path, monkeypatch):
    """Suites name their methods as 'all' (the quick suite does): a method from an installed plugin is planned."""
    from uqbench.methods import methods

    monkeypatch.delenv("UQBENCH_NO_PLUGINS")
    install_fake_plugin(tmp_path, {"swag": "uqbench_fake:Swag"})
    for attr in ("_items", "_origin"):
        monkeypatch.setattr(methods, attr, dict(getattr(methods, attr)))
    monkeypatch.setattr(methods, "_plugins", None)
    monkeypatch.setattr(methods, "_entry_points", {})
    try:
        keys = _dry(cli, "compare", "--suite", "quick", "--seeds", "1")
        planned = {k["method"] for k in keys}
        assert "swag" in planned and {"map", "vbll", "ensemble"} <= planned
        swag = next(k for k in keys if k["method"] == "swag")
        assert swag["code"]["method"] == "uqbench-fake==0.3.1"  # a plugin's version is part of its runs' keys
        keys = _dry(cli, "compare", "--suite", "quick", "--seeds", "1", "--exclude", "swag,sngp")
        assert "swag" not in {k["method"] for k in keys} and "sngp" not in {k["method"] for k in keys}
        assert {k["method"] for k in _dry(cli, "compare", "--tasks", "digits", "--methods", "s*")} == {"sngp", "swag"}
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("uqbench_fake", None)
