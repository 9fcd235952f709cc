"""`uqbench list` and `uqbench plugins`."""

from __future__ import annotations

import json

import pytest

from plugin_fixtures import forget_fake_plugins, fresh_registries, install_fake_plugin


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


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder for fake distributions, seen by fresh method and task registries; cleaned up afterwards."""
    fresh_registries(monkeypatch)
    yield tmp_path
    forget_fake_plugins(tmp_path)


def invoke_fresh(cli, monkeypatch, *args):
    """Run one command as a new process would: the registries discover and load the plugins again."""
    fresh_registries(monkeypatch)
    return cli(*args)


def test_plugins_lists_entry_points_with_status(cli, plugin_dir):
    install_fake_plugin(plugin_dir, {"swag": "uqbench_fake:Swag", "broken": "uqbench_missing:Thing"})
    result = cli("plugins", "--format", "json")
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["swag"]["status"] == "loaded" and rows["swag"]["distribution"] == "uqbench-fake"
    assert rows["broken"]["status"].startswith("error: ModuleNotFoundError")
    assert result.exit_code == 1 and result.stderr == "broken plugins: broken (see the status column)\n"
    listed = cli("list", "methods", "--format", "json")
    assert "swag" in {r["method"] for r in json.loads(listed.stdout)}
    assert "unavailable plugin: broken (uqbench-fake==0.3.1)" in listed.stderr


def test_plugins_exit_0_when_every_plugin_loads(cli, plugin_dir):
    install_fake_plugin(plugin_dir, {"swag": "uqbench_fake:Swag"})
    result = cli("plugins")
    assert result.exit_code == 0 and "swag" in result.stdout and result.stderr == ""


# A plugin that fails at import, however it fails, or whose target is unusable: (module source or None, entry-point
# target, the reason shown). Source cases put the code in the module uqbench_boom.
BROKEN = {
    "system-exit-0": ("raise SystemExit(0)", "uqbench_boom:Thing", "SystemExit: 0"),
    "system-exit-3": ("raise SystemExit(3)", "uqbench_boom:Thing", "SystemExit: 3"),
    "system-exit-text": ("import sys\nsys.exit('no GPU\\nfound')", "uqbench_boom:Thing", "SystemExit: no GPU found"),
    "keyboard-interrupt": ("raise KeyboardInterrupt", "uqbench_boom:Thing", "KeyboardInterrupt"),
    "generator-exit": ("raise GeneratorExit", "uqbench_boom:Thing", "GeneratorExit"),
    "custom-base-exception": (
        "class Boom(BaseException):\n    pass\nraise Boom('kaput')", "uqbench_boom:Thing", "Boom: kaput"
    ),
    "import-error": ("raise ImportError('needs torch-foo')", "uqbench_boom:Thing", "ImportError: needs torch-foo"),
    "attribute-error": (
        "import os\nos.no_such_thing", "uqbench_boom:Thing", "AttributeError: module 'os' has no attribute 'no_such_thing'"
    ),
    "missing-module": (None, "uqbench_missing:Thing", "ModuleNotFoundError: No module named 'uqbench_missing'"),
    "missing-attribute": (None, "uqbench_fake:Nope", "AttributeError: module 'uqbench_fake' has no attribute 'Nope'"),
    "not-a-method": (
        None, "uqbench_fake:NotAMethod",
        "ValueError: <class 'uqbench_fake.NotAMethod'> is not a subclass of uqbench.methods.base.Method",
    ),
    "abstract": (None, "uqbench_fake:Abstract", "ValueError: Abstract leaves abstract fit unimplemented"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_method_plugin_is_reported_everywhere(cli, plugin_dir, monkeypatch, case):
    source, target, reason = BROKEN[case]
    install_fake_plugin(plugin_dir, {"swag": "uqbench_fake:Swag", "boom": target},
                        modules={"uqbench_boom": source} if source else None)

    shown = invoke_fresh(cli, monkeypatch, "plugins", "--format", "json")
    assert shown.exit_code == 1, shown.output
    status = {r["name"]: r["status"] for r in json.loads(shown.stdout)}
    assert status == {"swag": "loaded", "boom": f"error: {reason}"}
    assert shown.stderr == "broken plugins: boom (see the status column)\n"

    table = invoke_fresh(cli, monkeypatch, "plugins")
    assert table.exit_code == 1 and "boom" in table.stdout and "loaded" in table.stdout and "ignored" not in table.stdout

    listed = invoke_fresh(cli, monkeypatch, "list", "methods", "--format", "json")
    assert listed.exit_code == 0, listed.output
    from uqbench.methods import methods

    assert {r["method"] for r in json.loads(listed.stdout)} == set(methods.builtins()) | {"swag"}
    assert listed.stderr == f"unavailable plugin: boom (uqbench-fake==0.3.1): error: {reason}\n"

    used = invoke_fresh(cli, monkeypatch, "run", "boom", "--task", "two-moons", "--out", plugin_dir / "results")
    assert used.exit_code == 2 and used.stdout == ""
    assert used.stderr == f"error: method 'boom' (uqbench-fake==0.3.1) failed to load: {reason}\n"
    assert not (plugin_dir / "results").exists()

    planned = invoke_fresh(cli, monkeypatch, "compare", "--tasks", "two-moons", "--methods", "all", "--dry-run",
                           "--format", "json")  # 'all' (or a pattern) leaves a broken plugin out, and says so
    assert planned.exit_code == 0, planned.output
    assert "boom" not in {r["key"]["method"] for r in json.loads(planned.stdout)}
    assert f"skipped method 'boom' (uqbench-fake==0.3.1) failed to load: {reason}" in planned.stderr


@pytest.mark.parametrize("raised", ["SystemExit(3)", "KeyboardInterrupt"])
def test_broken_task_plugin_is_reported_everywhere(cli, plugin_dir, monkeypatch, raised):
    install_fake_plugin(plugin_dir, {"boom-task": "uqbench_boom:Thing"}, group="uqbench.tasks",
                        modules={"uqbench_boom": f"raise {raised}"})
    reason = raised.replace("(", ": ").rstrip(")")

    shown = invoke_fresh(cli, monkeypatch, "plugins", "--format", "json")
    assert shown.exit_code == 1
    assert [(r["name"], r["group"], r["status"]) for r in json.loads(shown.stdout)] == [
        ("boom-task", "uqbench.tasks", f"error: {reason}")
    ]

    listed = invoke_fresh(cli, monkeypatch, "list", "tasks", "--format", "json")
    assert listed.exit_code == 0
    assert {"toy-regression", "two-moons", "digits"} <= {r["task"] for r in json.loads(listed.stdout)}
    assert listed.stderr == f"unavailable plugin: boom-task (uqbench-fake==0.3.1): error: {reason}\n"

    used = invoke_fresh(cli, monkeypatch, "run", "map", "--task", "boom-task", "--out", plugin_dir / "results")
    assert used.exit_code == 2
    assert used.stderr == f"error: task 'boom-task' (uqbench-fake==0.3.1) failed to load: {reason}\n"


def test_a_task_plugin_without_load_fails_at_load_not_at_use(cli, plugin_dir, monkeypatch):
    install_fake_plugin(plugin_dir, {"no-load": "uqbench_fake:NoLoad"}, group="uqbench.tasks")
    reason = "ValueError: NoLoad leaves abstract load unimplemented"
    shown = invoke_fresh(cli, monkeypatch, "plugins", "--format", "json")
    assert shown.exit_code == 1 and [r["status"] for r in json.loads(shown.stdout)] == [f"error: {reason}"]
    used = invoke_fresh(cli, monkeypatch, "run", "map", "--task", "no-load", "--out", plugin_dir / "results")
    assert used.exit_code == 2 and used.stdout == ""
    assert used.stderr == f"error: task 'no-load' (uqbench-fake==0.3.1) failed to load: {reason}\n"


def test_a_name_declared_by_two_distributions_loads_neither(cli, plugin_dir, monkeypatch):
    install_fake_plugin(plugin_dir, {"swag": "uqbench_fake:Swag"}, distribution="uqbench-one")
    install_fake_plugin(plugin_dir, {"swag": "uqbench_fake:Swag"}, distribution="uqbench-two")
    reason = ("the name is declared by 2 entry points: uqbench_fake:Swag (uqbench-one==0.3.1), "
              "uqbench_fake:Swag (uqbench-two==0.3.1); none is loaded")

    shown = invoke_fresh(cli, monkeypatch, "plugins", "--format", "json")
    assert shown.exit_code == 1
    rows = [(r["name"], r["distribution"], r["status"]) for r in json.loads(shown.stdout)]
    assert sorted(rows) == [("swag", "uqbench-one", f"error: {reason}"), ("swag", "uqbench-two", f"error: {reason}")]
    assert shown.stderr == "broken plugins: swag (see the status column)\n"

    listed = invoke_fresh(cli, monkeypatch, "list", "methods", "--format", "json")
    assert listed.exit_code == 0 and "swag" not in {r["method"] for r in json.loads(listed.stdout)}
    assert sorted(listed.stderr.splitlines()) == [
        f"unavailable plugin: swag (uqbench-one==0.3.1): error: {reason}",
        f"unavailable plugin: swag (uqbench-two==0.3.1): error: {reason}",
    ]

    used = invoke_fresh(cli, monkeypatch, "run", "swag", "--task", "two-moons", "--out", plugin_dir / "results")
    assert used.exit_code == 2 and len(used.stderr.splitlines()) == 1
    assert used.stderr.startswith("error: method 'swag' (uqbench-") and used.stderr.endswith(f"failed to load: {reason}\n")


def test_plugins_disabled(cli):
    result = cli("plugins")
    assert result.exit_code == 0 and "UQBENCH_NO_PLUGINS turns them off" in result.stderr


def test_a_plugin_that_loads_but_cannot_describe_itself_is_reported_not_a_traceback(cli, plugin_dir, monkeypatch):
    source = ("from uqbench.methods.map import MAP\n\n\nclass Mute(MAP):\n    @classmethod\n"
              "    def summary(cls):\n        raise RuntimeError('no docs')\n")
    install_fake_plugin(plugin_dir, {"mute": "uqbench_mute:Mute"}, modules={"uqbench_mute": source})
    listed = invoke_fresh(cli, monkeypatch, "list", "methods")
    assert listed.exit_code == 0 and "map" in listed.stdout and "mute" not in listed.stdout
    assert listed.stderr == ("unavailable plugin: mute (uqbench-fake==0.3.1): error: describing it failed: "
                             "RuntimeError: no docs\n")


def test_verbose_listings_are_blocks_that_fit_80_columns(cli, monkeypatch):
    import dataclasses

    from uqbench.methods import methods

    monkeypatch.setenv("COLUMNS", "80")
    result = cli("list", "methods", "-v")
    assert result.exit_code == 0
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    for name in methods.builtins():
        assert f"\n{name}\n" in f"\n{result.stdout}"
        for field in dataclasses.fields(methods.get(name).Config):
            assert f"{field.name}=" in result.stdout.replace("\n      ", " ")
    tasks = cli("list", "tasks", "-v")
    assert tasks.exit_code == 0 and max(len(line) for line in tasks.stdout.splitlines()) <= 80
