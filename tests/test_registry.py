"""Registry: lookup with did-you-mean, collisions, entry-point plugins (loaded, broken, shadowing, duplicated,
disabled)."""

from __future__ import annotations

import sys

import pytest

from plugin_fixtures import forget_fake_plugins, install_fake_plugin
from uqbench.errors import PluginError, UnknownName
from uqbench.methods import methods
from uqbench.methods.base import _check_method
from uqbench.methods.map import MAP
from uqbench.registry import Registry, describe
from uqbench.tasks.base import Task, _check_task


@pytest.fixture
def plugin_root(tmp_path, monkeypatch):
    """A folder for fake distributions, with discovery on; make_registry(plugin_root, ...) builds the registry."""
    monkeypatch.delenv("UQBENCH_NO_PLUGINS")
    yield tmp_path
    forget_fake_plugins(tmp_path)


def make_registry(root, entry_points=None, **kwargs):
    """A fresh registry for the uqbench.methods group with `map` built in, after writing the fake distribution."""
    install_fake_plugin(
        root,
        entry_points or {
            "swag": "uqbench_fake:Swag",
            "broken": "uqbench_missing_module:Thing",
            "not-a-method": "uqbench_fake:NotAMethod",
            "map": "uqbench_fake:Swag",
        },
        **kwargs,
    )
    registry = Registry("method", group="uqbench.methods", check=_check_method)
    registry.register("map")(MAP)
    return registry


@pytest.fixture
def fake_plugins(plugin_root):
    """The default fake distribution: a working plugin, two broken ones and one shadowing `map`."""
    return make_registry(plugin_root)


def test_unknown_name_lists_valid_names_and_suggests_closest():
    with pytest.raises(UnknownName, match=r"unknown method 'mapp'\. Did you mean 'map'\? Available: .*map"):
        methods.get("mapp")


def test_register_rejects_duplicates_and_bad_names():
    registry = Registry("thing")
    registry.register("one")(type("One", (), {}))
    with pytest.raises(ValueError, match="already registered"):
        registry.register("one")(type("Two", (), {}))
    with pytest.raises(ValueError, match="kebab-case"):
        registry.register("Bad_Name")(type("Three", (), {}))


def test_names_support_wildcards():
    registry = Registry("thing")
    for name in ("uci-boston", "uci-wine", "digits"):
        registry.register(name)(type(name, (), {}))
    assert registry.names("uci-*") == ["uci-boston", "uci-wine"]


def test_entry_point_plugin_loads_lazily_with_its_origin(fake_plugins):
    assert "swag" in fake_plugins.names()
    assert "uqbench_fake" not in sys.modules  # discovered, not imported
    cls = fake_plugins.get("swag")
    assert cls.name == "swag" and cls.Config().scale == 0.5
    assert fake_plugins.origin("swag") == "uqbench-fake==0.3.1"


def test_broken_plugin_is_contained_and_named(fake_plugins):
    with pytest.raises(PluginError, match=r"method 'broken' \(uqbench-fake==0\.3\.1\) failed to load: ModuleNotFoundError"):
        fake_plugins.get("broken")
    assert fake_plugins.get("swag")  # everything else keeps working
    status = {p.name: p.status for p in fake_plugins.plugins()}
    assert status["broken"].startswith("error: ModuleNotFoundError")
    assert status["not-a-method"].startswith("error: ValueError") and "not a subclass" in status["not-a-method"]
    assert status["swag"] == "loaded"


def test_plugin_cannot_shadow_a_builtin(fake_plugins):
    assert fake_plugins.get("map") is MAP
    status = {p.name: p.status for p in fake_plugins.plugins()}
    assert status["map"].startswith("ignored: cannot shadow")


def test_no_plugins_env_turns_discovery_off(fake_plugins, monkeypatch):
    monkeypatch.setenv("UQBENCH_NO_PLUGINS", "1")
    fresh = Registry("method", group="uqbench.methods", check=_check_method)
    assert fresh.names() == [] and fresh.plugins() == []


PICKY_CONFIG = """
from dataclasses import dataclass

from uqbench.methods.map import MAP


class Picky(MAP):
    \"\"\"A method whose Config cannot be built: the load-time check raises SystemExit.\"\"\"

    @dataclass(frozen=True)
    class Config:
        def __post_init__(self):
            raise SystemExit("needs a licence file")
"""

# (source of the module uqbench_boom, what a BaseException at import or in the checks is reported as)
BASE_EXCEPTIONS = {
    "system-exit-0": ("raise SystemExit(0)", "SystemExit: 0"),
    "system-exit-none": ("import sys\nsys.exit()", "SystemExit"),
    "keyboard-interrupt": ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    "generator-exit": ("raise GeneratorExit", "GeneratorExit"),
    "custom": ("class Boom(BaseException):\n    pass\nraise Boom('kaput')", "Boom: kaput"),
    "in-the-checks": (PICKY_CONFIG, "SystemExit: needs a licence file"),
}


@pytest.mark.parametrize("case", list(BASE_EXCEPTIONS))
def test_base_exception_of_a_plugin_is_contained(plugin_root, case):
    source, reason = BASE_EXCEPTIONS[case]
    registry = make_registry(plugin_root, {"swag": "uqbench_fake:Swag", "boom": "uqbench_boom:Picky"},
                             modules={"uqbench_boom": source})
    message = rf"^method 'boom' \(uqbench-fake==0\.3\.1\) failed to load: {reason}$"
    for _ in range(2):  # the second lookup reports the recorded failure without importing again
        with pytest.raises(PluginError, match=message):
            registry.get("boom")
    assert registry.get("swag").Config().scale == 0.5
    assert {p.name: p.status for p in registry.plugins()} == {"swag": "loaded", "boom": f"error: {reason}"}
    assert [p.name for p in registry.plugins() if p.broken] == ["boom"]
    assert set(registry.loaded()) == {"map", "swag"}


def test_abstract_method_plugin_is_rejected(plugin_root):
    registry = make_registry(plugin_root, {"abstract": "uqbench_fake:Abstract"})
    with pytest.raises(PluginError, match=r"failed to load: ValueError: Abstract leaves abstract fit unimplemented$"):
        registry.get("abstract")


def test_abstract_task_plugin_is_rejected(plugin_root):
    install_fake_plugin(plugin_root, {"no-load": "uqbench_fake:NoLoad"}, group="uqbench.tasks")
    registry = Registry("task", group="uqbench.tasks", check=_check_task)
    message = r"^task 'no-load' \(uqbench-fake==0\.3\.1\) failed to load: ValueError: NoLoad leaves abstract load unimplemented$"
    with pytest.raises(PluginError, match=message):
        registry.get("no-load")
    assert [p.status for p in registry.plugins()] == ["error: ValueError: NoLoad leaves abstract load unimplemented"]


def test_a_builtin_must_be_concrete_too():
    class NoLoad(Task):
        """A built-in that forgot `load`."""

        kind = "regression"

    with pytest.raises(ValueError, match="^NoLoad leaves abstract load unimplemented$"):
        Registry("task", check=_check_task).register("no-load")(NoLoad)


def test_a_name_declared_twice_in_one_group_loads_neither(plugin_root):
    install_fake_plugin(plugin_root, {"swag": "uqbench_fake:Swag"}, distribution="uqbench-other")
    registry = make_registry(plugin_root, {"swag": "uqbench_fake:NotAMethod", "ok": "uqbench_fake:Swag"})
    assert registry.names() == ["map", "ok"]
    with pytest.raises(PluginError, match=r"failed to load: the name is declared by 2 entry points: .*; none is loaded$"):
        registry.get("swag")
    infos = [p for p in registry.plugins() if p.name == "swag"]
    assert sorted(p.origin for p in infos) == ["uqbench-fake==0.3.1", "uqbench-other==0.3.1"]
    assert all(p.broken and "uqbench_fake:NotAMethod (uqbench-fake==0.3.1)" in p.status for p in infos)
    assert registry.get("ok")


def test_a_task_name_declared_by_two_distributions_loads_neither(plugin_root):
    for distribution in ("uqbench-one", "uqbench-two"):
        install_fake_plugin(plugin_root, {"line": "uqbench_fake:NoLoad"}, group="uqbench.tasks", distribution=distribution)
    registry = Registry("task", group="uqbench.tasks", check=_check_task)
    with pytest.raises(PluginError, match=r"\(uqbench-one==0\.3\.1\), .*\(uqbench-two==0\.3\.1\); none is loaded$"):
        registry.get("line")
    assert sorted(p.origin for p in registry.plugins() if p.broken) == ["uqbench-one==0.3.1", "uqbench-two==0.3.1"]


def test_the_same_entry_point_listed_twice_is_one(plugin_root):
    registry = make_registry(plugin_root, {"swag": "uqbench_fake:Swag"})
    with (plugin_root / "uqbench_fake-0.3.1.dist-info" / "entry_points.txt").open("a") as f:
        f.write("swag = uqbench_fake:Swag\n")
    assert registry.get("swag").Config().scale == 0.5
    assert [p.status for p in registry.plugins()] == ["loaded"]


class _Unprintable(BaseException):
    def __str__(self):
        raise RuntimeError("no")


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (SystemExit(3), "SystemExit: 3"),
        (SystemExit(), "SystemExit"),
        (KeyboardInterrupt(), "KeyboardInterrupt"),
        (ImportError("needs\n  torch"), "ImportError: needs torch"),
        (_Unprintable(), "_Unprintable: <unprintable message>"),
    ],
)
def test_describe_is_one_line(exc, text):
    assert describe(exc) == text


@pytest.mark.parametrize("value, off", [("1", True), ("true", True), ("YES", True), (" on ", True), ("", False),
                                        ("0", False), ("false", False), ("No", False), ("off", False)])
def test_uqbench_no_plugins_reads_the_usual_spellings(monkeypatch, value, off):
    from uqbench.registry import plugins_disabled

    monkeypatch.setenv("UQBENCH_NO_PLUGINS", value)
    assert plugins_disabled() is off


def test_uqbench_no_plugins_of_another_value_is_refused_not_guessed(monkeypatch):
    from uqbench.errors import BadConfig
    from uqbench.registry import plugins_disabled

    monkeypatch.setenv("UQBENCH_NO_PLUGINS", "maybe")
    with pytest.raises(BadConfig, match=r"^UQBENCH_NO_PLUGINS='maybe': expected 1, true, yes or on"):
        plugins_disabled()
