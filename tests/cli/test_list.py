"""`uqbench list` and `uqbench plugins`."""

from __future__ import annotations

import json
import sys

from plugin_fixtures import install_fake_plugin


def test_list_methods_shows_name_kinds_and_description(cli):
    result = cli("list", "methods", "--format", "json")
    assert result.exit_code == 0
    rows = {r["method"]: r for r in json.loads(result.stdout)}
    assert rows["map"]["kinds"] == "classification, regression"
    assert rows["map"]["description"].startswith("Deterministic network")


def test_list_tasks_verbose_shows_hyperparameters(cli):
    result = cli("list", "tasks", "-v", "--format", "json")
    rows = {r["task"]: r for r in json.loads(result.stdout)}
    assert {"toy-regression", "two-moons", "digits"} <= set(rows)
    assert rows["toy-regression"]["OOD sets"] == "gap, far"
    text = rows["toy-regression"]["hyperparameters (default)"]
    assert text.startswith("n_train=400, n_test=200, noise=0.1; recipe: epochs=200, batch_size=32, lr=0.003")
    assert "; backbone: arch='mlp', width=64, depth=2, activation='elu'" in text


def test_list_markdown(cli):
    result = cli("list", "methods", "--format", "markdown")
    assert result.stdout.startswith("| method ")


def test_plugins_lists_entry_points_with_status(cli, tmp_path, monkeypatch):
    from uqbench.methods import methods

    monkeypatch.delenv("UQBENCH_NO_PLUGINS")
    install_fake_plugin(tmp_path, {"swag": "uqbench_fake:Swag", "broken": "uqbench_missing:Thing"})
    for attr in ("_items", "_origin"):
        monkeypatch.setattr(methods, attr, dict(getattr(methods, attr)))
    monkeypatch.setattr(methods, "_plugins", None)
    monkeypatch.setattr(methods, "_entry_points", {})
    try:
        result = cli("plugins", "--format", "json")
        rows = {r["name"]: r for r in json.loads(result.stdout)}
        assert rows["swag"]["status"] == "loaded" and rows["swag"]["distribution"] == "uqbench-fake"
        assert rows["broken"]["status"].startswith("error: ModuleNotFoundError")
        listed = cli("list", "methods", "--format", "json")
        assert "swag" in {r["method"] for r in json.loads(listed.stdout)}
        assert "unavailable plugin: broken (uqbench-fake==0.3.1)" in listed.stderr
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("uqbench_fake", None)


def test_plugins_disabled(cli):
    result = cli("plugins")
    assert result.exit_code == 0 and "UQBENCH_NO_PLUGINS is set" in result.stderr
