"""The Python entry point `uqbench.run`: arguments of the wrong type are refused before anything runs."""

from __future__ import annotations

import pytest

import uqbench
from uqbench.api import BadArgument
from uqbench.errors import UserError

WRONG = {
    "seeds float": ({"seeds": 2.0}, r"seeds must be int; got 2\.0"),
    "seeds bool": ({"seeds": True}, r"seeds must be int; got True"),
    "split text": ({"split": "0"}, r"split must be int; got '0'"),
    "split bool": ({"split": False}, r"split must be int; got False"),
    "settings None": ({"settings": None}, r"settings must be a list of 'KEY=VALUE' texts; got None"),
    "settings one text": ({"settings": "epochs=1"}, r"settings must be a list of 'KEY=VALUE' texts; got 'epochs=1'"),
    "settings of numbers": ({"settings": [1]}, r"each setting must be a 'KEY=VALUE' text; got 1"),
    "out number": ({"out": 5}, r"out must be str or Path; got 5"),
    "data_dir number": ({"data_dir": 1}, r"data_dir must be str or Path or None; got 1"),
    "config list": ({"config": ["a.toml"]}, r"config must be str or Path or None; got \['a\.toml'\]"),
    "device None": ({"device": None}, r"device must be str; got None"),
    "force text": ({"force": "yes"}, r"force must be bool; got 'yes'"),
}


@pytest.mark.parametrize("case", WRONG, ids=list(WRONG))
def test_an_argument_of_the_wrong_type_is_refused_with_one_message(tmp_path, case):
    arguments, message = WRONG[case]
    arguments = {"out": tmp_path / "out", **arguments}
    with pytest.raises(BadArgument, match=f"^uqbench.run: {message}$") as caught:
        uqbench.run("map", "two-moons", **arguments)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, UserError)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["method", "task"])
def test_a_name_that_is_not_text_is_refused(tmp_path, name):
    names = {"method": "map", "task": "two-moons", name: 3}
    with pytest.raises(BadArgument, match=f"^uqbench.run: {name} must be str; got 3$"):
        uqbench.run(names["method"], names["task"], out=tmp_path)


def test_settings_may_be_any_iterable_of_texts(tmp_path, torch_state):
    records = uqbench.run("map", "two-moons", settings=(s for s in ["epochs=1"]), out=tmp_path)
    assert [r.status for r in records] == ["ok"] and records[0].key.recipe["epochs"] == 1
