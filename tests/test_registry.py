"""Registry: lookup with did-you-mean, collisions, entry-point plugins (loaded, broken, shadowing, disabled)."""

from __future__ import annotations

import sys

import pytest

from plugin_fixtures import install_fake_plugin
from uqbench.errors import PluginError, UnknownName
from uqbench.methods import methods
from uqbench.methods.base import _check_method
from uqbench.methods.map import MAP
from uqbench.registry import Registry


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    """A registry for the uqbench.methods group with `map` built in, and a fake distribution to discover."""
    monkeypatch.delenv("UQBENCH_NO_PLUGINS")
    install_fake_plugin(
        tmp_path,
        {
            "swag": "uqbench_fake:Swag",
            "broken": "uqbench_missing_module:Thing",
            "not-a-method": "uqbench_fake:NotAMethod",
            "map": "uqbench_fake:Swag",
        },
    )
    registry = Registry("method", group="uqbench.methods", check=_check_method)
    registry.register("map")(MAP)
    yield registry
    sys.path.remove(str(tmp_path))
    sys.modules.pop("uqbench_fake", None)


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
