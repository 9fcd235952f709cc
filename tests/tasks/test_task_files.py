"""Task files: a folder of TOML files registers tasks (`--include-path`, `UQBENCH_TASKS`) without a package."""

from __future__ import annotations

import json
import re

import pytest

from uqbench.tasks import task_files, tasks

HOUSES = """
[task]
name = "houses"
base = "csv"
description = "House prices from a survey (a test file)"
[set]
path = "houses.csv"
target = "price"
epochs = 2
width = 16
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A folder with houses.csv and houses.toml; the task registry and UQBENCH_TASKS restored afterwards."""
    monkeypatch.delenv(task_files.ENV, raising=False)
    items, origins, loaded = dict(tasks._items), dict(tasks._origin), dict(task_files.loaded)
    rows = "".join(f"{i % 7},{i % 5},{(i % 7) * 1.5 - (i % 5) * 0.25 + 0.01 * i}\n" for i in range(60))
    (tmp_path / "houses.csv").write_text("rooms,age,price\n" + rows)
    (tmp_path / "houses.toml").write_text(HOUSES)
    yield tmp_path
    for table, saved in ((tasks._items, items), (tasks._origin, origins), (task_files.loaded, loaded)):
        table.clear()
        table.update(saved)


def test_a_task_file_is_a_task_with_its_settings_as_defaults_and_its_hash_in_the_key(cli, folder, torch_state):
    result = cli("--include-path", folder, "run", "map", "--task", "houses", "--out", folder / "out", "--json", "-q")
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    key = record["key"]
    assert key["task"] == "houses" and key["task_config"]["path"] == str(folder / "houses.csv")
    assert key["task_config"]["target"] == "price" and key["recipe"]["epochs"] == 2 and key["backbone"]["width"] == 16
    assert re.fullmatch(r"taskfile:[0-9a-f]{16}", key["code"]["task"])
    listed = {r["task"]: r for r in json.loads(cli("--include-path", folder, "list", "tasks", "--format", "json").stdout)}
    assert listed["houses"]["description"] == "House prices from a survey (a test file)"


def test_an_edited_task_file_gives_other_runs(cli, folder):
    before = json.loads(cli("--include-path", folder, "run", "map", "--task", "houses", "--dry-run", "--json").stdout)
    for table in (tasks._items, tasks._origin):
        table.pop("houses")
    task_files.loaded.clear()
    (folder / "houses.toml").write_text(HOUSES + "# a comment changes the file's hash\n")
    after = json.loads(cli("--include-path", folder, "run", "map", "--task", "houses", "--dry-run", "--json").stdout)
    assert before[0]["id"] != after[0]["id"] and before[0]["key"]["code"] != after[0]["key"]["code"]


def test_workers_find_the_task_files_of_their_driver(cli, folder, torch_state):
    result = cli("--include-path", folder, "compare", "--tasks", "houses", "--methods", "map", "--seeds", "2",
                 "--jobs", "2", "--out", folder / "out", "--format", "json", "-q")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    assert row["task"] == "houses" and row["n_runs"] == 2 and row["n_failed"] == 0


BAD = {
    "unknown table": ("[tasks]\nname = 'x'\n", r"tasks: unknown table; a task file has \[task\] and \[set\]"),
    "no task table": ("[set]\npath = 'a.csv'\n", r"expected a \[task\] table \(name, base, description\) and a \[set\] table"),
    "unknown task key": (HOUSES.replace('base = "csv"', 'base = "csv"\nkind = 1'),
                         r"task\.kind: unknown key; expected one of name, base, description"),
    "bad name": (HOUSES.replace('name = "houses"', 'name = "My Houses"'),
                 r"task\.name: expected a kebab-case name such as 'houses'; got 'My Houses'"),
    "a built-in's name": (HOUSES.replace('name = "houses"', 'name = "two-moons"'),
                          r"task\.name: 'two-moons' is already a task \(builtin\); choose another name"),
    "unknown base": (HOUSES.replace('base = "csv"', 'base = "parquet"'),
                     r"task\.base: expected one of csv, npz; got 'parquet'"),
    "unknown setting": (HOUSES.replace("width = 16", "widht = 16"), r"set\.widht: unknown key; expected one of .*"),
    "mistyped setting": (HOUSES.replace("epochs = 2", "epochs = 'two'"), r"set\.epochs: must be an integer; got 'two'"),
    "value out of range": (HOUSES.replace("epochs = 2", "epochs = 0"),
                           r"set\.epochs: 'epochs' of the recipe must be at least 1; got 0"),
    "not TOML": ("[task\n", r"not valid TOML .*"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_task_file_is_one_line_naming_the_file_and_the_key(cli, folder, case):
    text, message = BAD[case]
    (folder / "houses.toml").write_text(text)
    result = cli("--include-path", folder, "list", "tasks")
    assert result.exit_code == 2, result.output
    assert re.fullmatch(rf"error: {re.escape(str(folder / 'houses.toml'))}: {message}\n", result.stderr), result.stderr


def test_an_include_path_that_is_not_a_folder_is_one_line(cli, folder, monkeypatch):
    result = cli("--include-path", folder / "houses.csv", "list", "tasks")
    assert result.exit_code == 2 and result.stderr == f"error: --include-path '{folder / 'houses.csv'}': no such directory\n"
    monkeypatch.setenv(task_files.ENV, str(folder / "nowhere"))
    result = cli("list", "tasks")
    assert result.exit_code == 2 and result.stderr == f"error: UQBENCH_TASKS: '{folder / 'nowhere'}' is not a directory\n"
