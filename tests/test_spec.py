"""One definition of a run: the same request gives the same specs and ids through every entry point, the
settings' precedence case by case, and keys that change with the data and the code."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import uqbench
from image_files import image_root, register_checksums
from uqbench.errors import BadConfig, DataError, UnknownName
from uqbench.experiment import CommandLine, compare_request, load_experiment
from uqbench.results import ResultStore
from uqbench.spec import RunSpec, plan, resolve
from uqbench.suites import Suite, suites
from uqbench.tasks import tasks

SETTINGS = ("epochs=2", "n_train=64", "n_test=32", "lr=0.01", "width=16")


def _ids_and_keys(records) -> dict[str, dict]:
    return {r["id"]: r["key"] for r in records}


def _store(out: Path) -> dict[str, dict]:
    return {r.id: dataclasses.asdict(r.key) for r in ResultStore(out).records()}


def test_the_same_request_gives_the_same_specs_and_ids_everywhere(cli, tmp_path):
    """`run`, `compare --jobs 1`, `compare --jobs 2`, their dry runs and the Python entry point resolve one request
    to identical keys and record ids."""
    sets = [a for s in SETTINGS for a in ("--set", s)]
    one = ("--tasks", "two-moons", "--methods", "map", "--seeds", "2")
    dry_run = json.loads(cli("run", "map", "--task", "two-moons", "--seeds", "2", *sets, "--dry-run", "--json").stdout)
    dry_compare = json.loads(cli("compare", *one, *sets, "--dry-run", "--format", "json").stdout)
    run = json.loads(cli("run", "map", "--task", "two-moons", "--seeds", "2", *sets, "--json", "-q",
                         "--out", tmp_path / "run").stdout)
    for jobs in ("1", "2"):
        result = cli("compare", *one, *sets, "--jobs", jobs, "-q", "--out", tmp_path / f"jobs{jobs}")
        assert result.exit_code == 0, result.output
    api = uqbench.run("map", "two-moons", seeds=2, settings=SETTINGS, out=tmp_path / "api")
    python = [resolve("map", "two-moons", SETTINGS, seed=seed) for seed in (0, 1)]

    expected = {s.id: dataclasses.asdict(s.key()) for s in python}
    assert len(expected) == 2
    assert _ids_and_keys(dry_run) == _ids_and_keys(dry_compare) == _ids_and_keys(run) == expected
    assert _store(tmp_path / "jobs1") == _store(tmp_path / "jobs2") == _store(tmp_path / "api") == expected
    assert {r.id for r in api} == set(expected)
    key = python[0].key()
    assert key.recipe["lr"] == 0.01 and key.recipe["epochs"] == 2 and key.backbone["width"] == 16
    assert key.task_config == {"n_train": 64, "n_test": 32, "n_ood": 500, "noise": 0.1}
    assert key.data == {"two-moons": "generated/1"} and key.code["uqbench"] == uqbench.__version__


# -- precedence, case by case ----------------------------------------------------------------------------------
@pytest.fixture
def layered(monkeypatch, tmp_path):
    """A suite and a config file that both set lr, so that each layer can be tested against the one below."""
    monkeypatch.setitem(suites._items, "layers", Suite("test", ("two-moons", "toy-regression"), ("map", "mc-dropout"),
                                                       seeds=1, settings=("lr=0.02", "epochs=5")))
    path = tmp_path / "exp.toml"
    path.write_text('[plan]\nsuite = "layers"\n[set]\nlr = 0.03\n')
    return load_experiment(path)[0]


def _recipe(line: CommandLine, file=None, method="map", task="two-moons"):
    specs = plan(compare_request(line, file)[0]).specs
    return next(s.recipe for s in specs if s.method == method and s.task == task)


def test_task_defaults_beat_class_defaults():
    spec = resolve("mc-dropout", "two-moons")
    assert spec.method_config.p == 0.05  # the class default
    assert spec.recipe.lr == 3e-3 and spec.backbone.width == 128  # two-moons' own recipe and backbone


def test_each_layer_beats_the_one_below(layered):
    assert _recipe(CommandLine(suite="layers")).lr == 0.02  # suite over the task's 3e-3
    assert _recipe(CommandLine(), layered).lr == 0.03  # config file over suite
    assert _recipe(CommandLine(settings=("lr=0.04",)), layered).lr == 0.04  # --set over config file
    assert _recipe(CommandLine(settings=("epochs=6",), epochs=7), layered).epochs == 7  # flag over --set
    assert _recipe(CommandLine(settings=("epochs=6",)), layered).epochs == 6  # --set over suite


def test_epochs_flag_beats_set_in_run_and_in_compare(cli):
    args = ("--set", "epochs=5", "--epochs", "7", "--dry-run")
    run = json.loads(cli("run", "map", "--task", "two-moons", *args, "--json").stdout)
    compare = json.loads(cli("compare", "--tasks", "two-moons", "--methods", "map", *args, "--format", "json").stdout)
    assert run[0]["key"]["recipe"]["epochs"] == compare[0]["key"]["recipe"]["epochs"] == 7


def test_within_a_layer_the_narrower_scope_wins_whatever_the_order():
    line = CommandLine(tasks=("two-moons", "toy-regression"), methods=("map", "mc-dropout"), seeds=1,
                       settings=("mc-dropout.two-moons.lr=0.7", "two-moons.lr=0.5", "mc-dropout.lr=0.6", "lr=0.1"))
    assert _recipe(line).lr == 0.5
    assert _recipe(line, task="toy-regression").lr == 0.1
    assert _recipe(line, method="mc-dropout", task="toy-regression").lr == 0.6
    assert _recipe(line, method="mc-dropout").lr == 0.7


def test_a_method_scoped_recipe_leaves_the_shared_map_network_alone():
    """`--set mc-dropout.lr=...` changes mc-dropout's recipe only: laplace keeps using the MAP network that map trains."""
    settings = ["mc-dropout.lr=0.01", "epochs=2"]
    specs = {m: resolve(m, "two-moons", settings) for m in ("map", "laplace", "mc-dropout")}
    assert specs["mc-dropout"].recipe.lr == 0.01 and specs["map"].recipe.lr == 3e-3
    assert specs["laplace"].shared_key() == specs["map"].shared_key() != specs["mc-dropout"].shared_key()


def test_ambiguous_and_unknown_keys_are_refused():
    with pytest.raises(BadConfig, match=r"--set p=0.1: no planned run has a key 'p'"):
        resolve("map", "two-moons", ["p=0.1"])
    with pytest.raises(BadConfig, match=r"two names|two method names"):
        resolve("map", "two-moons", ["map.laplace.lr=0.1"])
    with pytest.raises(UnknownName, match="'foo' is neither a part"):
        resolve("map", "two-moons", ["foo.lr=0.1"])
    # a setting for a method or task outside the plan is checked for typos, not applied
    assert resolve("map", "two-moons", ["mc-dropout.p=0.1"]).method == "map"
    with pytest.raises(BadConfig, match="no planned run has a key 'q'"):
        resolve("map", "two-moons", ["mc-dropout.q=0.1"])


# -- keys that cannot lie ----------------------------------------------------------------------------------------
def test_a_changed_data_file_changes_the_key(tmp_path, monkeypatch):
    root = image_root(tmp_path / "data")
    register_checksums(monkeypatch, root)
    before = resolve("map", "cifar10", data_dir=root)
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes() + b"\0")
    with pytest.raises(DataError, match="data_batch_3 has md5"):  # a file that fails its checksum is never planned
        resolve("map", "cifar10", data_dir=root)
    register_checksums(monkeypatch, root)  # one that passes it (a new published version, say) changes the key
    after = resolve("map", "cifar10", data_dir=root)
    assert before.data != after.data and before.id != after.id
    changed = {k for k in before.data if before.data[k] != after.data[k]}
    assert changed == {"cifar-10-batches-py/data_batch_3"}


def test_a_run_refuses_data_that_changed_after_it_was_planned(tmp_path, monkeypatch):
    from uqbench.runner import RunOptions, Runner

    root = image_root(tmp_path / "data")
    register_checksums(monkeypatch, root)
    spec = resolve("map", "cifar10", ["arch=mlp", "epochs=1", "n_test=4"], data_dir=root)
    (root / "cifar-10-batches-py" / "test_batch").write_bytes((root / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    register_checksums(monkeypatch, root)  # a change that passes the checksum check, which is the run's key's to catch
    record, _ = Runner(RunOptions(out=tmp_path / "out", data_dir=root)).run(spec)
    assert record.status == "error" and record.error["type"] == "DataChanged"
    assert "changed after the run was planned (cifar-10-batches-py/test_batch)" in record.error["message"]
    assert not list((tmp_path / "out").glob("*.json"))  # an environment failure is never stored


def test_generated_data_is_keyed_by_its_generator_version(monkeypatch):
    before = resolve("map", "toy-regression").id
    monkeypatch.setattr(tasks.get("toy-regression"), "data_version", "2")
    assert resolve("map", "toy-regression").id != before


def test_the_key_names_the_code_that_runs_it(monkeypatch):
    before = resolve("map", "two-moons")
    monkeypatch.setattr(uqbench, "__version__", "9.9.9")
    after = resolve("map", "two-moons")
    assert after.code["uqbench"] == "9.9.9" and after.id != before.id
    assert after.key().config_id == before.key().config_id  # a new release still compares with a baseline


def test_spec_round_trips_through_its_key():
    spec = resolve("vbll", "toy-regression", ["parameterization=lowrank", "cov_rank=2", "precision=bf16", "arch=mlp"])
    assert RunSpec.from_key(spec.key()) == spec


def test_another_architecture_drops_the_tasks_sizes():
    assert resolve("map", "digits").backbone.width == 32
    resnet = resolve("map", "digits", ["arch=resnet-small"]).backbone
    assert (resnet.width, resnet.depth) == (None, None)  # resnet-small's own defaults, not digits' 32-wide CNN
    assert resnet.spec((1, 8, 8)).width == 16


@pytest.mark.parametrize("name", ["two-moons", "recipe"])
def test_a_method_named_like_a_task_or_a_part_makes_its_settings_ambiguous_not_guessed(monkeypatch, name):
    """A plugin may register a method under a task's or a part's name: a setting scoped by that name is refused."""
    from uqbench.errors import BadConfig
    from uqbench.methods import methods
    from uqbench.methods.map import MAP
    from uqbench.settings import parse_setting

    monkeypatch.setitem(methods._items, name, type("Clash", (MAP,), {}))
    meaning = "method and of a task" if name == "two-moons" else "part and of a method"
    with pytest.raises(BadConfig, match=rf"^--set {name}\.lr=0\.1: '{name}' is the name of a {meaning}, so this "
                                        "setting is ambiguous"):
        parse_setting(f"{name}.lr=0.1")
