"""Bad input: one clear line on stderr, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import re

import pytest

CASES = [
    (["run", "mapp", "--task", "two-moons"], r"error: unknown method 'mapp'\. Did you mean 'map'\? Available: .*map"),
    (["run", "map", "--task", "two-moon"], r"error: unknown task 'two-moon'\. Did you mean 'two-moons'\? Available: "),
    (["run", "map", "--task", "two-moons", "--seeds", "0"], r"error: --seeds 0: must be at least 1"),
    (["run", "map", "--task", "two-moons", "--set", "lr=abc"], r"error: --set lr=abc: 'lr' of the training recipe must be a float; got 'abc'"),
    (["run", "map", "--task", "two-moons", "--set", "nope=1"], r"error: --set nope=1: no planned run has a key 'nope' \(methods: map; tasks: two-moons\); method 'map' takes: nothing; task 'two-moons' takes: n_train, .*; recipe takes: epochs, .*; backbone takes: arch, "),
    (["run", "map", "--task", "two-moons", "--set", "epochs"], r"error: --set epochs: expected key=value"),
    (["run", "map", "--task", "two-moons", "--set", "epochs=-3"], r"error: --set epochs=-3: 'epochs' of the training recipe must be at least 1; got -3"),
    (["run", "map", "--task", "two-moons", "--split", "4"], r"error: --split 4: task 'two-moons' has splits 0 \.\. 0"),
    (["run", "map", "--task", "two-moons", "--device", "tpu"], r"error: --device 'tpu': expected auto, cpu or cuda"),
    (["run", "map", "--task", "two-moons", "--set", "lr=inf"], r"error: --set lr=inf: 'lr' of the training recipe must be non-negative; got inf"),
    (["run", "map", "--task", "two-moons", "--set", "recipe.p=0.1"], r"error: --set recipe.p=0.1: no planned run has a key 'p' in its recipe"),
    (["run", "map", "--task", "two-moons", "--set", "arch=vit"], r"error: --set arch=vit: 'arch' of the backbone must be one of 'cnn', 'mlp', "),
    (["run", "map", "--task", "two-moons", "--set", "precision=fp16", "--device", "cpu"], r"error: precision 'fp16' needs a CUDA device"),
    (["run", "--task", "two-moons"], r"error: run needs exactly one method: give METHOD"),
    (["run", "map", "--task", "two-moons", "--config", "no-such.toml"], r"error: no-such.toml: cannot read it"),
    (["list", "things"], r"error: list 'things': expected 'methods', 'tasks' or 'protocols'"),
    (["list", "methods", "--format", "xml"], r"error: --format 'xml': expected one of table, markdown, csv, json"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(c[0][:4]) for c in CASES])
def test_bad_input_exits_2_with_one_line(cli, tmp_path, args, message):
    out = tmp_path / "out"
    result = cli(*args, *(["--out", out] if args[0] == "run" else []))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.match(message, lines[0]), lines[0]
    assert "Traceback" not in result.output
    assert not out.exists() or not list(out.glob("*.json"))


def test_unwritable_out_is_refused(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = cli("run", "map", "--task", "two-moons", "--out", blocker / "sub")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --out ") and "not a writable directory" in result.stderr


def test_unsupported_kind_is_refused(cli, tmp_path, monkeypatch):
    from uqbench.methods.map import MAP

    monkeypatch.setattr(MAP, "kinds", frozenset({"classification"}))
    result = cli("run", "map", "--task", "toy-regression", "--out", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: method 'map' does not support regression (task 'toy-regression'); it supports: classification"
    )
