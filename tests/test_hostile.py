"""Hostile and careless input for every command: one line `error: ...` on stderr and exit code 2 (or the documented
note and result), never a traceback, nothing stored lost or changed, nothing read through a link or unpickled.

Every row runs one command against its own copy of a small prepared store (map on two-moons, 2 seeds, 2 epochs,
saved predictions) and checks the exit code, every stderr line (regexes, matched whole), that "Traceback" appears
nowhere, and the files: every file under the test's folder (the store, the files beside it, the link targets
outside it) is byte-identical afterwards, except, where a command that runs meets an unusable record of a planned
run, the record moved unchanged into `quarantine/` and its run's new record (and figures written by `plot`).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import uqbench
from uqbench.results import QUARANTINE, ResultStore

RUN = ("run", "map", "--task", "two-moons", "--seeds", "2", "--epochs", "2", "--save-predictions", "--out", "{store}")
COMPARE = ("compare", "--tasks", "two-moons", "--methods", "map", "--seeds", "2", "--epochs", "2", "--out", "{store}")
NO_RUN = (*COMPARE, "--no-run")
CHECK = ("check", "{baseline}", "--results", "{store}")
PLOT = ("plot", "--results", "{store}", "--out", "{figs}")
REPRODUCE = ("reproduce", "{proto}", "--no-run", "--out", "{store}")
BIG = "x" * 10240  # a 10 kB value
HUGE = "1" + "0" * 400  # an integer beyond the float range
DIGITS = "9" * 5000  # beyond Python's int-from-text limit (4300 digits)


@dataclass(frozen=True)
class Prepared:
    """The prepared store (records of seed 0 and 1), a baseline made from it, and the record ids."""

    store: Path
    baseline: Path
    s0: str
    s1: str


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Prepared:
    import torch

    from uqbench.cli import app

    state = torch.get_rng_state(), torch.get_default_dtype(), torch.get_num_threads()
    root = tmp_path_factory.mktemp("prepared")
    store = root / "store"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UQBENCH_NO_PLUGINS", "1")
        made = CliRunner().invoke(app, [a.format(store=store) for a in RUN] + ["--quiet"])
        assert made.exit_code == 0, made.output
        board = CliRunner().invoke(app, [a.format(store=store) for a in NO_RUN] + ["--format", "json"])
        assert board.exit_code == 0, board.output
    torch.set_rng_state(state[0])
    torch.set_default_dtype(state[1])
    torch.set_num_threads(state[2])
    baseline = root / "baseline.json"
    baseline.write_text(board.stdout)
    s0, s1 = (r.id for r in sorted(ResultStore(store).records(), key=lambda r: r.key.seed))
    return Prepared(store, baseline, s0, s1)


@dataclass
class Ctx:
    """One row's folder: the store copy and the hostile things beside it (see `_ctx`)."""

    tmp: Path
    store: Path
    baseline: Path
    s0: str
    s1: str
    outside: Path  # link targets: must be unchanged afterwards
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def record(self) -> Path:
        return self.store / f"{self.s0}.json"

    @property
    def npz(self) -> Path:
        return self.store / f"{self.s0}.npz"

    def values(self) -> dict[str, str]:
        return {"store": str(self.store), "baseline": str(self.baseline), "s0": self.s0, "s1": self.s1,
                "record": str(self.record), "npz": str(self.npz), "big": BIG, "huge": HUGE, "digits": DIGITS,
                **{k: str(v) for k, v in self.paths.items()}}


def _ctx(tmp: Path, prepared: Prepared) -> Ctx:
    store = tmp / "store"
    shutil.copytree(prepared.store, store, symlinks=True)
    baseline = tmp / "baseline.json"
    shutil.copy(prepared.baseline, baseline)
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "record.json").write_bytes((store / f"{prepared.s0}.json").read_bytes())
    (outside / "predictions.npz").write_bytes((store / f"{prepared.s0}.npz").read_bytes())
    afile = tmp / "afile"
    afile.write_text("not a directory\n")
    loop = tmp / "loop"
    loop.symlink_to(loop)
    unwritable = afile / "sub"  # a path under a regular file: unwritable even for root
    if os.geteuid() != 0:
        unwritable = tmp / "read-only"
        unwritable.mkdir(mode=0o500)
    paths = {"afile": afile, "loop": loop, "missing": tmp / "missing", "unwritable": unwritable,
             "figs": tmp / "figs", "cfg": tmp / "exp.toml", "proto": tmp / "proto.toml", "dir": tmp / "a-dir"}
    paths["dir"].mkdir()
    return Ctx(tmp, store, baseline, prepared.s0, prepared.s1, outside, paths)


def _tree(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (links not followed): relative path -> ('file', bytes) | ('link', target) | ('dir',)."""
    out: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", path.read_bytes())
    return out


# -- setups: what a row does to its folder before the command ---------------------------------------------------
Setup = Callable[[Ctx], None]


def cfg(content: str | bytes) -> Setup:
    """Write the experiment file `{cfg}`."""
    return lambda c: c.paths["cfg"].write_bytes(content.encode() if isinstance(content, str) else content)


def proto(transform: Callable[[str], str | bytes]) -> Setup:
    """Write `{proto}`: the shipped gal2016 protocol, transformed."""
    shipped = (Path(uqbench.__file__).parent / "protocols" / "gal2016.toml").read_text()

    def setup(c: Ctx) -> None:
        text = transform(shipped)
        c.paths["proto"].write_bytes(text.encode() if isinstance(text, str) else text)

    return setup


def replaced(old: str, new: str) -> Callable[[str], str]:
    def transform(text: str) -> str:
        assert old in text
        return text.replace(old, new, 1)

    return transform


def _record_json(c: Ctx) -> dict:
    return json.loads(c.record.read_text())


def _with(change: Callable[[dict], object]) -> Callable[[Ctx], bytes]:
    def make(c: Ctx) -> bytes:
        data = _record_json(c)
        change(data)
        return json.dumps(data, indent=2).encode()

    return make


def _symlink_record(c: Ctx) -> None:
    c.record.unlink()
    c.record.symlink_to(c.outside / "record.json")  # a valid record of the same id, outside the store


def _directory_record(c: Ctx) -> None:
    c.record.unlink()
    c.record.mkdir()
    (c.record / "inside.txt").write_text("a directory named like a record\n")


# what is put at seed 0's record name -> the reason the store gives (regex)
CORRUPT: dict[str, tuple[Callable[[Ctx], bytes] | Setup, str]] = {
    "truncated": (lambda c: c.record.read_bytes()[: len(c.record.read_bytes()) // 2],
                  r"not valid JSON \(.+: line \d+ column \d+\)"),
    "empty": (lambda c: b"", r"not valid JSON \(Expecting value: line 1 column 1\)"),
    "[]": (lambda c: b"[]", r"a JSON array, not a record"),
    "null": (lambda c: b"null", r"a JSON null, not a record"),
    "leaderboard": (lambda c: c.baseline.read_bytes(), r"schema 'uqbench\.leaderboard/1', expected 'uqbench\.run/2'"),
    "old schema": (lambda c: b'{"schema": "uqbench.run/1", "key": {}}',
                   r"older record format 'uqbench\.run/1', not reused \(re-run it\)"),
    "missing field": (_with(lambda d: d.pop("metrics")), r"no field 'metrics'"),
    "seed a string": (_with(lambda d: d["key"].update(seed="0")), r"field key\.'seed' has a wrong type or value \('0'\)"),
    "NaN literal": (lambda c: re.sub(rb'"nll": [0-9.e-]+', b'"nll": NaN', c.record.read_bytes()), r"NaN is not JSON"),
    "Infinity literal": (lambda c: re.sub(rb'"ece": [0-9.e-]+', b'"ece": -Infinity', c.record.read_bytes()),
                         r"-Infinity is not JSON"),
    "another id": (lambda c: (c.store / f"{c.s1}.json").read_bytes(), r"holds the record {s1}, not {s0}"),
    "predictions ../../etc/passwd": (_with(lambda d: d.update(predictions="../../etc/passwd")),
                                     r"predictions '\.\./\.\./etc/passwd': expected {s0}\.npz beside the record"),
    "predictions /etc/passwd": (_with(lambda d: d.update(predictions="/etc/passwd")),
                                r"predictions '/etc/passwd': expected {s0}\.npz beside the record"),
    "symlink": (_symlink_record, r"a symbolic link \(not followed\)"),
    "directory": (_directory_record, r"not a regular file"),
    "not UTF-8": (lambda c: c.record.read_bytes().replace(b'"builtin"', b'"built\xe9n"', 1), r"not UTF-8 text"),
    "created_at not a time": (_with(lambda d: d.update(created_at="9999")),
                              r"field 'created_at' has a wrong type or value \('9999'\)"),
    "ok with an error": (_with(lambda d: d.update(error={"phase": "fit", "type": "X", "message": "m"})),
                         r"status 'ok' with an error"),
    "a key twice": (lambda c: c.record.read_bytes().rstrip()[:-1] + b', "status": "failed"}\n',
                    r"the key 'status' appears twice in one object"),
}


def corrupt(name: str) -> Setup:
    make, _ = CORRUPT[name]

    def setup(c: Ctx) -> None:
        content = make(c)
        if isinstance(content, bytes):
            c.record.write_bytes(content)

    return setup


def _arrays(c: Ctx) -> dict[str, np.ndarray]:
    with np.load(c.npz) as npz:
        return {k: npz[k] for k in npz.files}


def _npz(change: Callable[[dict[str, np.ndarray]], object]) -> Setup:
    """Replace seed 0's predictions by an .npz of its arrays, changed."""

    def setup(c: Ctx) -> None:
        arrays = _arrays(c)
        change(arrays)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        c.npz.write_bytes(buffer.getvalue())

    return setup


def _npz_bytes(make: Callable[[Ctx], bytes]) -> Setup:
    return lambda c: c.npz.write_bytes(make(c))


def _members(c: Ctx, edit: Callable[[str, bytes], tuple[str, bytes]]) -> bytes:
    """Seed 0's predictions as a zip of .npy members, each (name, bytes) passed through `edit`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in _arrays(c).items():
            npy = io.BytesIO()
            np.save(npy, array)
            archive.writestr(*edit(f"{name}.npy", npy.getvalue()))
    return buffer.getvalue()


def _lying_header(name: str, data: bytes) -> tuple[str, bytes]:
    """`targets` with a header claiming 10**12 elements (8 TB) over its 200."""
    if name != "targets.npy":
        return name, data
    array = np.load(io.BytesIO(data))
    header = np.lib.format.header_data_from_array_1_0(array)
    header["shape"] = (10**12,)
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, header)
    return name, out.getvalue() + array.tobytes()


def _symlink_npz(c: Ctx) -> None:
    c.npz.unlink()
    c.npz.symlink_to(c.outside / "predictions.npz")


def _directory_npz(c: Ctx) -> None:
    c.npz.unlink()
    c.npz.mkdir()


def _chain(*setups: Setup) -> Setup:
    def setup(c: Ctx) -> None:
        for s in setups:
            s(c)

    return setup


def _markup_store(c: Ctx) -> None:
    """The store under a name holding rich markup (`[/b]` closes no tag; `[red]` would vanish)."""
    target = c.tmp / "st[/b]o[red]re"  # the folder 'b]o[red]re' in the folder 'st['
    target.parent.mkdir()
    c.store.rename(target)
    c.store = target


def _markup_baseline(c: Ctx) -> None:
    board = json.loads(c.baseline.read_text())
    board["rows"][0]["method"] = "ma[/b]p"
    c.baseline.write_text(json.dumps(board))


def _store_with_newline(c: Ctx) -> None:
    target = c.tmp / "two\nlines"
    c.store.rename(target)
    c.store = target


# -- the table ---------------------------------------------------------------------------------------------------
SAME, QUARANTINED = "same", "quarantined"


@dataclass(frozen=True)
class Row:
    """args: the command line ({store}, {record}, ... filled in); lines: regexes, one per stderr line (matched whole);
    mode: SAME (every file unchanged; `plot` may add figures under {figs}) or QUARANTINED (seed 0's record moved
    unchanged into quarantine/ and run again)."""

    name: str
    args: tuple[str, ...]
    code: int
    lines: tuple[str, ...]
    setup: Setup | None = None
    mode: str = SAME
    stdout: str | None = ""  # a regex the whole stdout must match (re.DOTALL); None: not checked


def bad(name: str, args: tuple[str, ...], message: str, setup: Setup | None = None) -> Row:
    """Bad input: exit 2, one line `error: MESSAGE`, nothing on stdout, nothing changed."""
    return Row(name, args, 2, (f"error: {message}",), setup)


def recipe(key_value: str, message: str) -> Row:
    """`run --set KEY=VALUE` (without --epochs, which would beat an `epochs` setting)."""
    return bad(f"--set {key_value}", ("run", "map", "--task", "two-moons", "--out", "{store}", "--set", key_value), message)


def method_set(method: str, key_value: str, message: str) -> Row:
    args = ("run", method, "--task", "two-moons", "--epochs", "2", "--out", "{store}", "--set", key_value)
    return bad(f"{method} --set {key_value}", args, message)


OPTION_VALUES = [
    recipe("lr=inf", r"--set lr=inf: 'lr' of the training recipe must be non-negative; got inf"),
    recipe("lr=-inf", r"--set lr=-inf: 'lr' of the training recipe must be non-negative; got -inf"),
    recipe("lr=nan", r"--set lr=nan: 'lr' of the training recipe must be a float; got 'nan'"),
    recipe("lr=NaN", r"--set lr=NaN: 'lr' of the training recipe must be a float; got 'NaN'"),
    recipe("lr=1e400", r"--set lr=1e400: 'lr' of the training recipe must be non-negative; got inf"),
    recipe("lr=-1", r"--set lr=-1: 'lr' of the training recipe must be non-negative; got -1\.0"),
    recipe("lr=true", r"--set lr=true: 'lr' of the training recipe must be a float; got 'true'"),
    recipe("lr=", r"--set lr=: 'lr' of the training recipe must be a float; got ''"),
    recipe("lr=0x10", r"--set lr=0x10: 'lr' of the training recipe must be a float; got '0x10'"),
    recipe("lr=1e-3\u200b", r"--set lr=1e-3\\u200b: 'lr' of the training recipe must be a float; got '1e-3\\u200b'"),
    recipe("lr=__import__('os')", r"--set lr=__import__\('os'\): 'lr' of the training recipe must be a float; got .*"),
    recipe("lr={big}", r"--set lr=x+: 'lr' of the training recipe must be a float; got 'x+'"),
    recipe("lr={huge}", r"--set lr=10+: 'lr' of the training recipe must be non-negative; got inf"),
    recipe("lr=1\n2", r"--set lr=1\\n2: 'lr' of the training recipe must be a float; got '1\\n2'"),
    recipe("adam_eps=1e-400", r"--set adam_eps=1e-400: 'adam_eps' of the training recipe: 1e-400 is nonzero but below the smallest float \(it would be 0\)$"),
    recipe("adam_eps=0", r"--set adam_eps=0: 'adam_eps' of the training recipe must be positive; got 0\.0"),
    recipe("weight_decay=-1e-4",
           r"--set weight_decay=-1e-4: 'weight_decay' of the training recipe must be non-negative; got -0\.0001"),
    recipe("grad_clip=0", r"--set grad_clip=0: 'grad_clip' of the training recipe must be positive; got 0\.0"),
    recipe("grad_clip=nan", r"--set grad_clip=nan: 'grad_clip' of the training recipe must be a float or none; got 'nan'"),
    recipe("grad_clip=-inf", r"--set grad_clip=-inf: 'grad_clip' of the training recipe must be positive; got -inf"),
    recipe("noise_lr=-1", r"--set noise_lr=-1: 'noise_lr' of the training recipe must be non-negative; got -1\.0"),
    recipe("batch_size={huge}",
           r"--set batch_size=10+: 'batch_size' of the training recipe must be at least 1 and within the float range; "
           r"got 10+"),
    recipe("batch_size=0", r"--set batch_size=0: 'batch_size' of the training recipe must be at least 1; got 0"),
    recipe("batch_size=1.5", r"--set batch_size=1\.5: 'batch_size' of the training recipe must be an integer; got '1\.5'"),
    recipe("batch_size=true", r"--set batch_size=true: 'batch_size' of the training recipe must be an integer; got 'true'"),
    recipe("epochs={digits}", r"--set epochs=9+: 'epochs' of the training recipe must be an integer; got '9+'"),
    recipe("epochs=-3", r"--set epochs=-3: 'epochs' of the training recipe must be at least 1; got -3"),
    recipe("patience=0", r"--set patience=0: 'patience' of the training recipe must be at least 1; got 0"),
    recipe("precision=FP32",
           r"--set precision=FP32: 'precision' of the training recipe must be one of 'fp32', 'bf16', 'fp16'; got 'FP32'"),
    recipe("precision=bf16\x00", r"--set precision=bf16\\x00: 'precision' of the training recipe must be one of .*; "
                                 r"got 'bf16\\x00'"),
    recipe("optimizer=lbfgs", r"--set optimizer=lbfgs: 'optimizer' of the training recipe must be one of 'adamw', "
                              r"'adam', 'sgd'; got 'lbfgs'"),
    recipe("schedule=", r"--set schedule=: 'schedule' of the training recipe must be one of 'constant', 'cosine'; got ''"),
    recipe("arch=vit", r"--set arch=vit: 'arch' of the backbone must be one of 'cnn', 'mlp', 'resnet-small', "
                       r"'resnet18', 'wrn-28-10'; got 'vit'"),
    recipe("arch={big}", r"--set arch=x+: 'arch' of the backbone must be one of .*; got 'x+'"),
    recipe("arch=\U0001F600", r"--set arch=\U0001F600: 'arch' of the backbone must be one of .*; got '\U0001F600'"),
    recipe("arch=\x1b[2J", r"--set arch=\\x1b\[2J: 'arch' of the backbone must be one of .*; got '\\x1b\[2J'"),
    recipe("width=0", r"--set width=0: 'width' of the backbone must be at least 1; got 0"),
    recipe("width=1.5", r"--set width=1\.5: 'width' of the backbone must be an integer or none; got '1\.5'"),
    recipe("width={huge}",
           r"--set width=10+: 'width' of the backbone must be at least 1 and within the float range; got 10+"),
    recipe("depth=-1", r"--set depth=-1: 'depth' of the backbone must be at least 1; got -1"),
    recipe("activation=gelu", r"--set activation=gelu: 'activation' of the backbone must be one of 'relu', 'elu', "
                              r"'tanh'; got 'gelu'"),
    recipe("n_train=-1", r"--set n_train=-1: 'n_train' of task 'two-moons' must be at least 1; got -1"),
    recipe("n_train={huge}",
           r"--set n_train=10+: 'n_train' of task 'two-moons' must be at least 1 and within the float range; got 10+"),
    recipe("n_test=0", r"--set n_test=0: 'n_test' of task 'two-moons' must be at least 1; got 0"),
    recipe("n_ood=0", r"--set n_ood=0: 'n_ood' of task 'two-moons' must be at least 1; got 0"),
    recipe("noise=inf", r"--set noise=inf: 'noise' of task 'two-moons' must be non-negative; got inf"),
    recipe("noise=-0.1", r"--set noise=-0\.1: 'noise' of task 'two-moons' must be non-negative; got -0\.1"),
    bad("digits n_test=5", ("run", "map", "--task", "digits", "--out", "{store}", "--set", "n_test=5"),
        r"--set n_test=5: 'n_test' of task 'digits' must be in \[10, 1787\]; got 5"),
    bad("digits n_test=-huge", ("run", "map", "--task", "digits", "--out", "{store}", "--set", "n_test=-{huge}"),
        r"--set n_test=-10+: 'n_test' of task 'digits' must be in \[10, 1787\] and within the float range; got -10+"),
    method_set("mc-dropout", "p=1", r"--set p=1: 'p' of method 'mc-dropout' must be in \(0, 1\); got 1\.0"),
    method_set("mc-dropout", "p=0", r"--set p=0: 'p' of method 'mc-dropout' must be in \(0, 1\); got 0\.0"),
    method_set("mc-dropout", "p=nan", r"--set p=nan: 'p' of method 'mc-dropout' must be a float; got 'nan'"),
    method_set("mc-dropout", "p=-inf", r"--set p=-inf: 'p' of method 'mc-dropout' must be in \(0, 1\); got -inf"),
    method_set("mc-dropout", "samples=0", r"--set samples=0: 'samples' of method 'mc-dropout' must be at least 1; got 0"),
    method_set("mc-dropout", "tau=0", r"--set tau=0: 'tau' of method 'mc-dropout' must be positive; got 0\.0"),
    method_set("mc-dropout", "length_scale=1e400",
               r"--set length_scale=1e400: 'length_scale' of method 'mc-dropout' must be positive; got inf"),
    method_set("mc-dropout", "input_dropout=maybe",
               r"--set input_dropout=maybe: 'input_dropout' of method 'mc-dropout' must be a boolean; got 'maybe'"),
    method_set("ensemble", "members=0", r"--set members=0: 'members' of method 'ensemble' must be at least 1; got 0"),
    method_set("ensemble", "adversarial=-0.01",
               r"--set adversarial=-0\.01: 'adversarial' of method 'ensemble' must be positive; got -0\.01"),
    method_set("sngp", "spec_norm_bound=-0.1",
               r"--set spec_norm_bound=-0\.1: 'spec_norm_bound' of method 'sngp' must be positive; got -0\.1"),
    method_set("sngp", "n_random_features=1e3",
               r"--set n_random_features=1e3: 'n_random_features' of method 'sngp' must be an integer; got '1e3'"),
    method_set("sngp", "mean_field_factor=-inf",
               r"--set mean_field_factor=-inf: 'mean_field_factor' of method 'sngp' must be non-negative; got -inf"),
    method_set("sngp", "ridge=0", r"--set ridge=0: 'ridge' of method 'sngp' must be positive; got 0\.0"),
    method_set("sngp", "length_scale=0", r"--set length_scale=0: 'length_scale' of method 'sngp' must be positive; got 0\.0"),
    method_set("vbll", "regularization_weight=-1",
               r"--set regularization_weight=-1: 'regularization_weight' of method 'vbll' must be positive; got -1\.0"),
    bad("vbll-package --set dof=0", ("run", "vbll-package", "--task", "toy-regression", "--out", "{store}", "--set", "dof=0"),
        r"--set dof=0: 'dof' of method 'vbll-package' must be positive; got 0\.0"),
    bad("toy-regression --set noise=-inf", ("run", "map", "--task", "toy-regression", "--out", "{store}", "--set",
                                            "noise=-inf"),
        r"--set noise=-inf: 'noise' of task 'toy-regression' must be non-negative; got -inf"),
    bad("cifar10 --set n_train=0", ("run", "map", "--task", "cifar10", "--out", "{store}", "--set", "n_train=0"),
        r"--set n_train=0: 'n_train' of task 'cifar10' must be at least 1; got 0"),
    bad("cifar10 --set augment=2", ("run", "map", "--task", "cifar10", "--out", "{store}", "--set", "augment=2"),
        r"--set augment=2: 'augment' of task 'cifar10' must be a boolean; got '2'"),
    method_set("vbll", "prior_scale=0", r"--set prior_scale=0: 'prior_scale' of method 'vbll' must be positive; got 0\.0"),
    method_set("vbll", "dof=-1", r"--set dof=-1: 'dof' of method 'vbll' must be positive; got -1\.0"),
    method_set("vbll", "wishart_scale=nan",
               r"--set wishart_scale=nan: 'wishart_scale' of method 'vbll' must be a float; got 'nan'"),
    method_set("vbll", "mc_samples=true",
               r"--set mc_samples=true: 'mc_samples' of method 'vbll' must be an integer; got 'true'"),
    method_set("vbll", "cov_rank=0", r"--set cov_rank=0: 'cov_rank' of method 'vbll' must be at least 1; got 0"),
    method_set("laplace", "prior_precision=-1",
               r"--set prior_precision=-1: 'prior_precision' of method 'laplace' must be positive; got -1\.0"),
    method_set("laplace", "prior_precision=1e-400",
               r"--set prior_precision=1e-400: 'prior_precision' of method 'laplace': 1e-400 is nonzero but below the smallest float \(it would be 0\)$"),
    method_set("laplace", "marglik_steps={huge}",
               r"--set marglik_steps=10+: 'marglik_steps' of method 'laplace' must be at least 1 and within the float "
               r"range; got 10+"),
    method_set("laplace", "marglik_lr=0", r"--set marglik_lr=0: 'marglik_lr' of method 'laplace' must be positive; got 0\.0"),
    method_set("laplace", "ood_score=bogus",
               r"--set ood_score=bogus: 'ood_score' of method 'laplace' must be one of 'max-prob', 'variance'; got 'bogus'"),
    recipe("=1", r"--set =1: expected key=value"),
    recipe("lr", r"--set lr: expected key=value"),
    recipe("recipe.recipe.lr=1", r"--set recipe\.recipe\.lr=1: two part names \('recipe', 'recipe'\) in one setting"),
    recipe("nosuch.lr=1", r"--set nosuch\.lr=1: 'nosuch' is neither a part \(method, task, recipe, backbone\) nor a "
                          r"method or task name; methods: .*"),
    recipe("{big}=1", r"--set x+=1: no planned run has a key 'x+' \(methods: map; tasks: two-moons\); .*"),
    bad("--epochs 0", (*RUN, "--epochs", "0"), r"--epochs 0: 'epochs' of the training recipe must be at least 1; got 0"),
    # scoped to a method or task outside the plan: not run, but still checked
    bad("out-of-plan mc-dropout.p=5", (*NO_RUN, "--set", "mc-dropout.p=5"),
        r"--set mc-dropout\.p=5: 'p' of method 'mc-dropout' must be in \(0, 1\); got 5\.0"),
    bad("out-of-plan mc-dropout.p=abc", (*NO_RUN, "--set", "mc-dropout.p=abc"),
        r"--set mc-dropout\.p=abc: 'p' of method 'mc-dropout' must be a float; got 'abc'"),
    bad("out-of-plan uci-boston.epochs=0", (*NO_RUN, "--set", "uci-boston.epochs=0"),
        r"--set uci-boston\.epochs=0: 'epochs' of the training recipe must be at least 1; got 0"),
    bad("out-of-plan digits.n_test=5", (*NO_RUN, "--set", "digits.n_test=5"),
        r"--set digits\.n_test=5: 'n_test' of task 'digits' must be in \[10, 1787\]; got 5"),
    bad("out-of-plan sngp.backbone.width=0", (*NO_RUN, "--set", "sngp.backbone.width=0"),
        r"--set sngp\.backbone\.width=0: 'width' of the backbone must be at least 1; got 0"),
    bad("out-of-plan config file mc-dropout.p", (*NO_RUN, "--config", "{cfg}"),
        r"{cfg}: set\.mc-dropout\.p: 'p' of method 'mc-dropout' must be in \(0, 1\); got 5\.0",
        cfg("[set.mc-dropout]\np = 5.0\n")),
]

USAGE = [
    bad("--seeds abc", (*RUN, "--seeds", "abc"),
        r"Invalid value for '--seeds': .*integer.* \(see `uqbench run --help`\)"),
    bad("--seeds 0", (*RUN, "--seeds", "0"), r"--seeds 0: must be at least 1"),
    bad("--seeds -1", (*RUN, "--seeds", "-1"), r"--seeds -1: must be at least 1"),
    bad("--epochs 1e3", (*RUN, "--epochs", "1e3"), r"Invalid value for '--epochs': .* \(see `uqbench run --help`\)"),
    bad("--epochs huge", (*RUN, "--epochs", "{huge}"),
        r"--epochs 10+: 'epochs' of the training recipe must be at least 1 and within the float range; got 10+"),
    bad("--split 1", (*RUN, "--split", "1"), r"--split 1: task 'two-moons' has splits 0 \.\. 0"),
    bad("--split -1", (*RUN, "--split", "-1"), r"--split -1: task 'two-moons' has splits 0 \.\. 0"),
    bad("--device tpu", (*RUN, "--device", "tpu"), r"--device 'tpu': expected auto, cpu or cuda"),
    bad("--device ''", (*RUN, "--device", ""), r"--device '': expected auto, cpu or cuda"),
    bad("run without a method", ("run", "--task", "two-moons", "--out", "{store}"),
        r"run needs exactly one method: give METHOD, or a config file whose plan names one"),
    bad("run without --task", ("run", "map", "--out", "{store}"),
        r"run needs exactly one task: give --task, or a config file whose plan names one"),
    bad("--task without a value", ("run", "map", "--out", "{store}", "--task"),
        r"Option '--task' requires an argument \(see `uqbench .*--help`\)"),
    bad("unknown option", (*RUN, "--bogus"), r"No such option: --bogus.* \(see `uqbench run --help`\)"),
    bad("unknown method", ("run", "mapp", "--task", "two-moons", "--out", "{store}"),
        r"unknown method 'mapp'\. Did you mean 'map'\? Available: .*"),
    bad("method with a newline", ("run", "map\n", "--task", "two-moons", "--out", "{store}"),
        r"unknown method 'map\\n'\. Did you mean 'map'\? Available: .*"),
    bad("unknown task, 10 kB", ("run", "map", "--task", "{big}", "--out", "{store}"), r"unknown task 'x+'\. Available: .*"),
    bad("compare --jobs 0", (*COMPARE, "--jobs", "0"), r"--jobs 0: must be at least 1"),
    bad("compare --jobs 0 --dry-run", (*COMPARE, "--jobs", "0", "--dry-run"), r"--jobs 0: must be at least 1"),
    bad("compare --exclude everything", (*COMPARE, "--exclude", "map"), r"--exclude map: leaves no method to run$"),
    bad("reproduce --jobs 0", ("reproduce", "gal2016", "--jobs", "0", "--no-run", "--out", "{store}"),
        r"--jobs 0: must be at least 1"),
    bad("compare --executor pbs --dry-run", (*COMPARE, "--executor", "pbs", "--dry-run"),
        r"--executor 'pbs': expected one of local, ray, slurm"),
    bad("compare --seeds 10**20", (*COMPARE, "--seeds", "1" + "0" * 20),
        r"--seeds 1000+: must be at least 1 and at most 10000"),
    bad("run --seeds 10001", (*RUN, "--seeds", "10001"), r"--seeds 10001: must be at least 1 and at most 10000"),
    bad("compare --jobs -1", (*COMPARE, "--jobs", "-1"), r"--jobs -1: must be at least 1"),
    bad("compare --jobs abc", (*COMPARE, "--jobs", "abc"),
        r"Invalid value for '--jobs': .* \(see `uqbench compare --help`\)"),
    bad("compare --splits 0", (*COMPARE, "--splits", "0"), r"--splits 0: must be at least 1"),
    bad("compare --seeds 0", (*COMPARE, "--seeds", "0"), r"--seeds 0: must be at least 1"),
    bad("compare --executor pbs", (*COMPARE, "--executor", "pbs"), r"--executor 'pbs': expected one of local, ray, slurm"),
    bad("compare --tasks ,", (*COMPARE, "--tasks", ","), r"--tasks ',': expected comma-separated names"),
    bad("compare --methods zz*", (*COMPARE, "--methods", "zz*"), r"no method matches 'zz\*'; available: .*"),
    bad("compare --exclude nosuch", (*COMPARE, "--exclude", "nosuch"), r"unknown method 'nosuch'\. Available: .*"),
    bad("compare --suite nosuch", ("compare", "--suite", "nosuch", "--out", "{store}"),
        r"unknown suite 'nosuch'\. Available: cifar, quick, uci"),
    bad("compare --suite and --tasks", ("compare", "--suite", "quick", "--tasks", "two-moons", "--out", "{store}"),
        r"--suite and --tasks: give one of them \(a suite names its own tasks\)"),
    bad("compare --format xml", (*COMPARE, "--format", "xml"), r"--format 'xml': expected one of table, markdown, csv, json, latex"),
    bad("compare --set lr=inf", (*COMPARE, "--set", "lr=inf"),
        r"--set lr=inf: 'lr' of the training recipe must be non-negative; got inf"),
    bad("list", ("list",), r"Missing argument 'what' \(see `uqbench list --help`\)"),
    bad("list things", ("list", "things"), r"list 'things': expected 'methods', 'tasks' or 'protocols'"),
    bad("list ''", ("list", ""), r"list '': expected 'methods', 'tasks' or 'protocols'"),
    bad("list methods extra", ("list", "methods", "extra"),
        r"Got unexpected extra argument\(s\) \(extra\) \(see `uqbench list --help`\)"),
    bad("list --format xml", ("list", "methods", "--format", "xml"),
        r"--format 'xml': expected one of table, markdown, csv, json, latex"),
    bad("plugins --format ''", ("plugins", "--format", ""), r"--format '': expected one of table, markdown, csv, json, latex"),
    bad("plugins extra", ("plugins", "extra"),
        r"Got unexpected extra argument\(s\) \(extra\) \(see `uqbench plugins --help`\)"),
    bad("no such command", ("nosuchcommand",), r"No such command 'nosuchcommand' \(see `uqbench --help`\)"),
    bad("unknown global option", ("--bogus",), r"No such option: --bogus \(see `uqbench --help`\)"),
    bad("check without a baseline", ("check",), r"Missing argument 'baseline' \(see `uqbench check --help`\)"),
    bad("reproduce without a protocol", ("reproduce",), r"Missing argument 'protocol' \(see `uqbench reproduce --help`\)"),
]

_RUN_CFG = (*RUN, "--config", "{cfg}")
CONFIG_FILES = [
    bad("config: TOML syntax", _RUN_CFG,
        r"{cfg}: not valid TOML \(Expected ']' at the end of a table declaration \(at line 1, column 5\)\)",
        cfg("[set\nepochs = 2\n")),
    bad("config: binary", _RUN_CFG, r"{cfg}: not a UTF-8 text file", cfg(bytes(range(256)))),
    bad("config: latin-1", _RUN_CFG, r"{cfg}: not a UTF-8 text file", cfg("[set]\nepochs = 2 # café\n".encode("latin-1"))),
    bad("config: UTF-16", _RUN_CFG, r"{cfg}: not a UTF-8 text file", cfg("[set]\nepochs = 2\n".encode("utf-16"))),
    bad("config: a directory", (*RUN, "--config", "{dir}"), r"{dir}: cannot read it \(Is a directory\)"),
    bad("config: missing", (*RUN, "--config", "{missing}"), r"{missing}: cannot read it \(No such file or directory\)"),
    bad("config: symlink loop", (*RUN, "--config", "{loop}"), r"{loop}: cannot read it \(Too many levels of symbolic links\)"),
    bad("config: a string for an int", _RUN_CFG,
        r"{cfg}: set\.epochs: 'epochs' of the training recipe must be an integer; got 'two'", cfg('[set]\nepochs = "two"\n')),
    bad("config: a float for an int", _RUN_CFG,
        r"{cfg}: set\.epochs: 'epochs' of the training recipe must be an integer; got 1\.5", cfg("[set]\nepochs = 1.5\n")),
    bad("config: a boolean for a float", _RUN_CFG,
        r"{cfg}: set\.lr: 'lr' of the training recipe must be a float; got True", cfg("[set]\nlr = true\n")),
    bad("config: nan", _RUN_CFG, r"{cfg}: set\.lr: 'lr' of the training recipe must be a float; got nan",
        cfg("[set]\nlr = nan\n")),
    bad("config: -inf", _RUN_CFG, r"{cfg}: set\.lr: 'lr' of the training recipe must be non-negative; got -inf",
        cfg("[set]\nlr = -inf\n")),
    bad("config: 1e400", _RUN_CFG, r"{cfg}: set\.grad_clip: 'grad_clip' of the training recipe must be positive; got inf",
        cfg("[set]\ngrad_clip = 1e400\n")),
    bad("config: an int beyond the float range", _RUN_CFG,
        r"{cfg}: set\.width: 'width' of the backbone must be at least 1 and within the float range; got 10+",
        cfg(f"[set]\nwidth = {HUGE}\n")),
    bad("config: a number for a choice", _RUN_CFG,
        r"{cfg}: set\.precision: 'precision' of the training recipe must be one of 'fp32', 'bf16', 'fp16'; got 16",
        cfg("[set]\nprecision = 16\n")),
    bad("config: a list for a value", _RUN_CFG, r"{cfg}: set\.epochs: expected a single value; got \[1, 2\]",
        cfg("[set]\nepochs = [1, 2]\n")),
    bad("config: unknown table", _RUN_CFG, r"{cfg}: unknown table or key 'bogus'; expected: plan, set, search",
        cfg("[bogus]\nx = 1\n")),
    bad("config: top-level key", _RUN_CFG, r"{cfg}: unknown table or key 'epochs'; expected: plan, set, search",
        cfg("epochs = 3\n")),
    bad("config: [set] not a table", _RUN_CFG, r"{cfg}: set: expected a table; got 3", cfg("set = 3\n")),
    bad("config: unknown plan key", _RUN_CFG,
        r"{cfg}: plan\.foo: unknown key; expected one of suite, methods, exclude, tasks, seeds, splits",
        cfg("[plan]\nfoo = 1\n")),
    bad("config: plan.seeds 0", _RUN_CFG, r"{cfg}: plan\.seeds: expected a positive integer; got 0",
        cfg("[plan]\nseeds = 0\n")),
    bad("config: plan.seeds true", _RUN_CFG, r"{cfg}: plan\.seeds: expected a positive integer; got True",
        cfg("[plan]\nseeds = true\n")),
    bad("config: plan.methods 3", _RUN_CFG, r"{cfg}: plan\.methods: expected a non-empty list of names; got 3",
        cfg("[plan]\nmethods = 3\n")),
    bad("config: plan.tasks []", _RUN_CFG, r"{cfg}: plan\.tasks: expected a non-empty list of names; got \[\]",
        cfg("[plan]\ntasks = []\n")),
    bad("config: plan.splits text", _RUN_CFG, r"{cfg}: plan\.splits: expected a positive integer; got 'some'",
        cfg('[plan]\nsplits = "some"\n')),
    bad("config: unknown scope", _RUN_CFG,
        r"{cfg}: set\.nosuch\.epochs: 'nosuch' is neither a part \(method, task, recipe, backbone\) nor a method or "
        r"task name; .*", cfg("[set.nosuch]\nepochs = 2\n")),
    bad("config: a key with a newline", _RUN_CFG, r"{cfg}: set\.a\\nb: no planned run has a key 'a\\nb' .*",
        cfg('[set]\n"a\\nb" = 1\n')),
    bad("config: a key with a terminal escape", _RUN_CFG,
        r"{cfg}: set\.ep\\x1b\[31mochs: no planned run has a key 'ep\\x1b\[31mochs' .*",
        cfg('[set]\n"ep\\u001b[31mochs" = 1\n')),
    bad("config: table declared twice", _RUN_CFG, r"{cfg}: not valid TOML \(Cannot declare \('set',\) twice .*\)",
        cfg("[set]\nepochs = 2\n[set]\nepochs = 3\n")),
    bad("config: deeply nested arrays", _RUN_CFG, r"{cfg}: not valid TOML \(arrays or tables nested too deeply\)",
        cfg("[set]\nepochs = " + "[" * 100_000 + "]" * 100_000 + "\n")),
    bad("config: deeply nested inline tables", _RUN_CFG, r"{cfg}: not valid TOML \(arrays or tables nested too deeply\)",
        cfg("[set]\nx = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n")),
    bad("config: 3000 nested [set] tables", _RUN_CFG,
        r"{cfg}: set\.map\.map\.map\.map: tables nested too deeply; a setting's tables name at most a method, a task "
        r"and a part", cfg("[set." + ".".join(["map"] * 3000) + "]\nepochs = 2\n")),
    bad("config: 3000 nested grid tables", _RUN_CFG,
        r"{cfg}: search\.grid\.map\.map\.map\.map: tables nested too deeply; .*",
        cfg('[search]\nmetric = "nll"\n[search.grid.' + ".".join(["map"] * 3000) + "]\nlr = [0.1]\n")),
    bad("config: empty grid axis", _RUN_CFG, r"{cfg}: search\.grid\.lr: expected a non-empty list of values; got \[\]",
        cfg('[search]\nmetric = "nll"\n[search.grid]\nlr = []\n')),
    bad("config: grid value inf", _RUN_CFG,
        r"{cfg}: search\.grid\.lr: 'lr' of the training recipe must be non-negative; got inf",
        cfg('[search]\nmetric = "nll"\n[search.grid]\nlr = [0.1, inf]\n')),
    bad("config: search.fraction 1.5", _RUN_CFG, r"{cfg}: search: 'fraction' must be in \(0, 1\); got 1\.5",
        cfg('[search]\nmetric = "nll"\nfraction = 1.5\n[search.grid]\nlr = [0.1]\n')),
    bad("config: search.fraction nan", _RUN_CFG, r"{cfg}: search: 'fraction' must be a float; got nan",
        cfg('[search]\nmetric = "nll"\nfraction = nan\n[search.grid]\nlr = [0.1]\n')),
    bad("config: search.metric unknown", _RUN_CFG, r"{cfg}: search\.metric: unknown metric 'nlll'\. Did you mean 'nll'\? .*",
        cfg('[search]\nmetric = "nlll"\n[search.grid]\nlr = [0.1]\n')),
    bad("compare config: plan.splits 0", (*COMPARE, "--config", "{cfg}"),
        r"{cfg}: plan\.splits: expected a positive integer; got 0", cfg("[plan]\nsplits = 0\n")),
]


def _on_record(command: tuple[str, ...], name: str) -> Row:
    """The command on a store whose seed-0 record is CORRUPT[name]."""
    note = r"note: {record}: " + CORRUPT[name][1]
    label = f"{command[0]}{' --no-run' if '--no-run' in command else ''}: {name}"
    if command is RUN:
        return Row(label, command, 0, (
            note + r"; moved to {store}/quarantine/{s0}\.[^/]+\.json, its run runs again",
            r"map on two-moons, seed 0: ok, done -> {record}",
            r"map on two-moons, seed 1: ok, already in the store \(use --force to re-run\) -> {store}/{s1}\.json",
        ), corrupt(name), QUARANTINED, stdout=r"map on two-moons \(2 seeds\).*accuracy.*")
    if command is COMPARE:
        return Row(label, command, 0, (
            r"1 of 2 planned runs are in '{store}'; running 1",
            r"\[1/1\] map on two-moons, seed 0 split 0: ok, fit [0-9.]+ s",
            r"1 run in [0-9]+ s, 0 failed",
            note + r"; moved to {store}/quarantine/{s0}\.[^/]+\.json, its run runs again",
        ), corrupt(name), QUARANTINED, stdout=r"two-moons \(rank by nll\).*map .* 2 .*")
    if command is CHECK:
        return Row(label, command, 1, (
            note + "; ignored",
            r"runs missing: map on two-moons \(config [0-9a-f]+\): the baseline has 2 run\(s\), the store 1",
            r"0 regressed, 0 improved, 0 unchanged \(0 compared\); runs missing in 1 of 1 baseline row\(s\); .*",
        ), corrupt(name), stdout=r"changes beyond tolerance, runs missing.*two-moons .* map .* missing.*")
    if command is PLOT:
        return Row(label, command, 0, (note + "; ignored",), corrupt(name),
                   stdout=r"{figs}/two-moons/reliability\.png\n{figs}/two-moons/ood\.png\n{figs}/two-moons/curves\.png\n")
    return Row(label, command, 0, (note + "; ignored",), corrupt(name),
               stdout=r"two-moons \(rank by nll\).* missing .*map .* 1 .*")


STORES = [_on_record(command, name) for name in CORRUPT for command in (NO_RUN, COMPARE, RUN, CHECK, PLOT)]

NOT_PREDICTIONS = r"{npz}: not a saved-predictions file \("


def _npz_row(name: str, setup: Setup, reason: str) -> Row:
    return bad(f"plot: npz {name}", PLOT, NOT_PREDICTIONS + reason + r"\)", setup)


PLOTS = [
    _npz_row("truncated", _npz_bytes(lambda c: c.npz.read_bytes()[:3000]), r"BadZipFile: File is not a zip file"),
    _npz_row("empty", _npz_bytes(lambda c: b""), r"not an \.npz \(zip\) archive"),
    _npz_row("a text file", _npz_bytes(lambda c: b"import os; os.system('touch /tmp/pwned')\n"),
             r"not an \.npz \(zip\) archive"),
    _npz_row("a pickle", _npz_bytes(lambda c: b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94."),
             r"not an \.npz \(zip\) archive"),
    _npz_row("pickled object array", _npz(lambda a: a.update(probs=np.array([{"x": 1}] * 200, dtype=object))),
             r"probs\.npy: an array of Python objects \(never unpickled\)"),
    _npz_row("no arrays", _npz(lambda a: a.clear()), r"no array 'targets' of shape \[N\] or \[N, D\]"),
    _npz_row("probs of 10 rows", _npz(lambda a: a.update(probs=a["probs"][:10])),
             r"array probs missing or not a float \[200, K\] array"),
    _npz_row("score of shape [N, 1]", _npz(lambda a: a.update(score=a["score"][:, None])),
             r"array score missing or not of shape \[200\]"),
    _npz_row("integer probs", _npz(lambda a: a.update(probs=(a["probs"] > 0.5).astype(int))),
             r"array probs missing or not a float \[200, K\] array"),
    _npz_row("targets [N, 1, 1]", _npz(lambda a: a.update(targets=a["targets"][:, None, None])),
             r"no array 'targets' of shape \[N\] or \[N, D\]"),
    _npz_row("no OOD probs", _npz(lambda a: a.pop("ood_far_probs")),
             r"array ood_far_mean missing or not a float \[500, K\] array"),
    _npz_row("NaN probs", _npz(lambda a: a["probs"].fill(np.nan)), r"array probs has values that are not finite"),
    _npz_row("infinite score", _npz(lambda a: a["ood_far_score"].fill(np.inf)),
             r"array ood_far_score has values that are not finite"),
    _npz_row("probs above 1", _npz(lambda a: a.update(probs=a["probs"] * 3)), r"probabilities outside \[0, 1\]"),
    _npz_row("targets as text", _npz(lambda a: a.update(targets=a["targets"].astype(str))),
             r"array targets is not numeric \(<U21\)"),
    _npz_row("class 7 of 2", _npz(lambda a: a["targets"].__setitem__(0, 7)),
             r"array targets: expected class indices 0 \.\. 1"),
    _npz_row("a header claiming 8 TB", _npz_bytes(lambda c: _members(c, _lying_header)),
             r"targets\.npy: its header declares more data than the archive holds"),
    _npz_row("a member that is no .npy", _npz_bytes(lambda c: _members(c, lambda n, d: (n[:-4], b"raw" + d))),
             r"ValueError: the magic string is not correct; expected b'\\x93NUMPY', got b'raw\\x93NU'"),
    _npz_row("a symlink", _symlink_npz,
             r"NotARegularFile: {npz}: a symbolic link \(not followed\)"),
    _npz_row("a directory", _directory_npz, r"NotARegularFile: {npz}: not a regular file"),
    _npz_row("a dense grid with class probabilities",
             _npz(lambda a: a.update(grid_x=np.zeros((4, 1)), grid_mean=np.zeros((4, 1)), grid_var=np.ones((4, 1)))),
             r"array grid_x: a dense grid belongs to regression predictions only"),
    bad("plot --kind bogus", (*PLOT, "--kind", "bogus"),
        r"--kind 'bogus': expected one of reliability, bands, ood, curves, shift"),
    bad("plot --format jpg", (*PLOT, "--format", "jpg"), r"--format 'jpg': expected one of png, pdf, svg"),
    bad("plot --dpi 0", (*PLOT, "--dpi", "0"), r"--dpi 0: expected a whole number of dots per inch from 10 to 600"),
    bad("plot --dpi 100000", (*PLOT, "--dpi", "100000"),
        r"--dpi 100000: expected a whole number of dots per inch from 10 to 600"),
    bad("plot --dpi 1.5", (*PLOT, "--dpi", "1.5"),
        r"Invalid value for '--dpi': .*valid integer.* \(see `uqbench .*--help`\)"),
    bad("plot --kind without a value", (*PLOT, "--kind"), r"Option '--kind' requires an argument \(see `uqbench .*--help`\)"),
    bad("plot --results missing", ("plot", "--results", "{missing}", "--out", "{figs}"),
        r"--results '{missing}': no such directory"),
    bad("plot --results a file", ("plot", "--results", "{afile}", "--out", "{figs}"),
        r"--results '{afile}': no such directory"),
    bad("plot --results a symlink loop", ("plot", "--results", "{loop}", "--out", "{figs}"),
        r"--results '{loop}': no such directory"),
    bad("plot --tasks nosuch", (*PLOT, "--tasks", "nosuch"),
        r"--tasks 'nosuch': '{store}' holds no run of it; it holds runs of: two-moons"),
    bad("plot --methods map,nosuch", (*PLOT, "--methods", "map,nosuch"),
        r"--methods 'nosuch': '{store}' holds no run of it; it holds runs of: map"),
    bad("plot --tasks ,", (*PLOT, "--tasks", ","), r"--tasks ',': expected comma-separated names"),
    bad("plot --out a file", ("plot", "--results", "{store}", "--out", "{afile}"),
        r"--out '{afile}': not a writable directory \(File exists\)"),
    bad("plot --out unwritable", ("plot", "--results", "{store}", "--out", "{unwritable}"),
        r"--out '{unwritable}': not a writable directory \((Not a directory|Permission denied)\)"),
    bad("plot --kind bands of classification runs", (*PLOT, "--kind", "bands"),
        r"no figure of kind bands applies to the saved runs \(tasks: two-moons\): bands needs a regression task with "
        r"one input \(toy-regression\)"),
    Row("plot: one run's predictions deleted", PLOT, 0,
        (r"note: {npz}: missing, so run {s0} \(map on two-moons, seed 0 split 0\) is not drawn \(run it again with "
         r"--save-predictions to make it\)",), lambda c: c.npz.unlink(), stdout=r"(.*\.png\n)+"),
    bad("plot: no saved predictions", (*PLOT, "--kind", "reliability"),
        r"no saved predictions in '{store}': run `uqbench compare --save-predictions` .*",
        lambda c: [p.unlink() for p in c.store.glob("*.npz")]),
    Row("plot: no saved predictions, the curves still drawn", PLOT, 0,
        (*[r"note: {store}/[0-9a-f]{{16}}\.npz: missing, so run .* is not drawn .*"] * 2,
         r"note: no saved predictions in '{store}': .*; only the training curves are drawn"),
        lambda c: [p.unlink() for p in c.store.glob("*.npz")], stdout=r"{figs}/two-moons/curves\.png\n"),
]

CHECKS = [
    bad("check --results a file", ("check", "{baseline}", "--results", "{afile}"), r"--results '{afile}': no such directory"),
    bad("check --results missing", ("check", "{baseline}", "--results", "{missing}"),
        r"--results '{missing}': no such directory"),
    bad("check --results a symlink loop", ("check", "{baseline}", "--results", "{loop}"),
        r"--results '{loop}': no such directory"),
    *(bad(f"check --tolerance {text!r}", (*CHECK, "--tolerance", text),
          rf"--tolerance '{re.escape(text)}': expected a non-negative number or METRIC=NUMBER")
      for text in ("abc", "nan", "inf", "-inf", "-1", "1e400", "", "nll=", "=0.1", "nll=nan", "nll=-0.1")),
    bad("check --tolerance 'nll==1'", (*CHECK, "--tolerance", "nll==1"),
        r"--tolerance 'nll=': no metric of the baseline matches it\. Did you mean 'nll'\? The baseline's metrics: .*"),
    *(bad(f"check --k {text!r}", (*CHECK, "--k", text), rf"--k '{re.escape(text)}': expected a non-negative number or "
                                                         r"METRIC=NUMBER")
      for text in ("abc", "nan", "inf", "-2", "", "nll=nan", "ece=1e999")),
    bad("check --tolerance for a metric it lacks", (*CHECK, "--tolerance", "rmse=0.1"),
        r"--tolerance 'rmse': no metric of the baseline matches it\. The baseline's metrics: accuracy, .*"),
    bad("check --k pattern matching nothing", (*CHECK, "--k", "zz*=3"),
        r"--k 'zz\*': no metric of the baseline matches it\. .*"),
    bad("check --format xml", (*CHECK, "--format", "xml"), r"--format 'xml': expected one of table, markdown, csv, json, latex"),
    bad("check --format ''", (*CHECK, "--format", ""), r"--format '': expected one of table, markdown, csv, json, latex"),
    Row("check: a baseline method holding markup", CHECK, 1, (
        r"nothing compared: '{store}' holds no run of any of the baseline's 1 row\(s\)",
        r"0 regressed, 0 improved, 0 unchanged \(0 compared\); runs missing in 1 of 1 baseline row\(s\); .*",
    ), _markup_baseline, stdout=r".*│ two-moons │ ma\[/b\]p │ +runs │ .*"),
    Row("check: corrupt record in a store named with a newline", CHECK, 1, (
        r"note: .*/two\\nlines/{s0}\.json: a JSON null, not a record; ignored",
        r"runs missing: .*", r"0 regressed, .*",
    ), _chain(_store_with_newline, corrupt("null")), stdout=None),
]

PATHS = [
    bad("run --out a file", (*RUN[:-1], "{afile}"), r"--out '{afile}': not a writable directory \(File exists\)"),
    bad("run --out under a file", (*RUN[:-1], "{afile}/sub"),
        r"--out '{afile}/sub': not a writable directory \(Not a directory\)"),
    bad("run --out unwritable", (*RUN[:-1], "{unwritable}"),
        r"--out '{unwritable}': not a writable directory \((Not a directory|Permission denied)\)"),
    bad("run --out a symlink loop", (*RUN[:-1], "{loop}"), r"--out '{loop}': not a writable directory \(File exists\)"),
    bad("run --out under a symlink loop", (*RUN[:-1], "{loop}/sub"),
        r"--out '{loop}/sub': not a writable directory \(Too many levels of symbolic links\)"),
    bad("compare --out a file", (*COMPARE[:-1], "{afile}"), r"--out '{afile}': not a writable directory \(File exists\)"),
    bad("compare --out unwritable", (*COMPARE[:-1], "{unwritable}"),
        r"--out '{unwritable}': not a writable directory \((Not a directory|Permission denied)\)"),
    bad("compare --no-run --out a file", (*NO_RUN[:-2], "{afile}", "--no-run"),
        r"the store '{afile}' holds none of the 2 planned runs; run without --no-run"),
    bad("compare --no-run --out missing", (*NO_RUN[:-2], "{missing}", "--no-run"),
        r"the store '{missing}' holds none of the 2 planned runs; run without --no-run"),
    bad("run --data-dir a file", ("run", "map", "--task", "uci-boston", "--epochs", "1", "--out", "{store}", "--data-dir",
                                  "{afile}"), r"uci-boston: file not found: {afile}/bostonHousing/data/data\.txt .*"),
    bad("run --data-dir missing", ("run", "map", "--task", "uci-boston", "--epochs", "1", "--out", "{store}", "--data-dir",
                                   "{missing}"), r"uci-boston: file not found: {missing}/bostonHousing/data/data\.txt .*"),
    bad("compare --data-dir a symlink loop", ("compare", "--tasks", "uci-boston", "--methods", "map", "--seeds", "1",
                                              "--splits", "1", "--out", "{store}", "--data-dir", "{loop}"),
        r"uci-boston: file not found: {loop}/bostonHousing/data/data\.txt .*"),
    bad("run: quarantine is a link", RUN,
        r"{record}: not valid JSON \(Expecting value: line 1 column 1\); its run would replace it, and it cannot be "
        r"moved into {store}/quarantine \({store}/quarantine: a symbolic link where uqbench keeps its own folder; not "
        r"followed \(remove it\)\): move it away, then run again",
        _chain(corrupt("empty"), lambda c: (c.store / QUARANTINE).symlink_to(c.outside))),
    bad("compare: quarantine is a file", COMPARE,
        r"{record}: not valid JSON \(Expecting value: line 1 column 1\); its run would replace it, and it cannot be "
        r"moved into {store}/quarantine \({store}/quarantine: a file where uqbench keeps its own folder \(remove or "
        r"rename it\)\): move it away, then run again",
        _chain(corrupt("empty"), lambda c: (c.store / QUARANTINE).write_text("a file\n"))),
    Row("run --out holding markup", RUN, 0, (
        r"map on two-moons, seed 0: ok, already in the store \(use --force to re-run\) -> {record}",
        r"map on two-moons, seed 1: ok, already in the store \(use --force to re-run\) -> {store}/{s1}\.json",
    ), _markup_store, stdout=None),
    Row("compare --out holding markup", COMPARE, 0, (r"2 of 2 planned runs are in '{store}'; running 0",),
        _markup_store, stdout=None),
]

_PROTO_ERROR = r"{proto}: "
REPRODUCE_ROWS = [
    bad("reproduce nosuch", ("reproduce", "nosuch", "--no-run", "--out", "{store}"),
        r"unknown protocol 'nosuch'; shipped: gal2016, gal2018-grid, harrison2024, lakshminarayanan2017 \(or give a path "
        r"to a \.toml file\)"),
    bad("reproduce missing .toml", ("reproduce", "{missing}.toml", "--no-run", "--out", "{store}"),
        r"{missing}\.toml: cannot read it \(No such file or directory\)"),
    bad("reproduce a directory", ("reproduce", "{dir}", "--no-run", "--out", "{store}"),
        r"{dir}: cannot read it \(Is a directory\)"),
    bad("reproduce a non-TOML file", ("reproduce", "{afile}", "--no-run", "--out", "{store}"),
        r"{afile}: not valid TOML \(.*\)"),
    bad("reproduce: binary", REPRODUCE, _PROTO_ERROR + r"not a UTF-8 text file", proto(lambda t: bytes(range(256)) * 4)),
    bad("reproduce: TOML syntax", REPRODUCE, _PROTO_ERROR + r"not valid TOML \(.*\)", proto(replaced("[plan]", "[plan"))),
    bad("reproduce: deep nesting", REPRODUCE, _PROTO_ERROR + r"not valid TOML \(arrays or tables nested too deeply\)",
        proto(lambda t: t + "\n[bogus]\nx = " + "[" * 50_000 + "\n")),
    bad("reproduce: no [protocol]", REPRODUCE, _PROTO_ERROR + r"protocol: a protocol needs a \[protocol\] table",
        proto(lambda t: re.sub(r"\[protocol\].*?\n\[plan\]", "[plan]", t, flags=re.DOTALL))),
    bad("reproduce: version 0", REPRODUCE, _PROTO_ERROR + r"protocol\.version: expected a positive integer; got 0",
        proto(replaced("version = 1", "version = 0"))),
    bad("reproduce: version 1.5", REPRODUCE, _PROTO_ERROR + r"protocol\.version: expected a positive integer; got 1\.5",
        proto(replaced("version = 1", "version = 1.5"))),
    bad("reproduce: version true", REPRODUCE, _PROTO_ERROR + r"protocol\.version: expected a positive integer; got True",
        proto(replaced("version = 1", "version = true"))),
    bad("reproduce: unknown protocol key", REPRODUCE,
        _PROTO_ERROR + r"protocol\.doi: unknown key; expected one of name, version, title, citation, code, notes",
        proto(replaced("version = 1", 'version = 1\ndoi = "x"'))),
    bad("reproduce: spread var", REPRODUCE, _PROTO_ERROR + r"reference\.spread: expected 'se' or 'sd'; got 'var'",
        proto(replaced('spread = "se"', 'spread = "var"'))),
    bad("reproduce: printed words", REPRODUCE,
        _PROTO_ERROR + r"reference\.uci-boston\.rmse: expected 'MEAN ± SPREAD' as printed; got 'about three'",
        proto(replaced('rmse = "2.97 ± 0.19"', 'rmse = "about three"'))),
    bad("reproduce: printed number", REPRODUCE,
        _PROTO_ERROR + r"reference\.uci-boston\.rmse: expected 'MEAN ± SPREAD' as printed; got 2\.97",
        proto(replaced('rmse = "2.97 ± 0.19"', "rmse = 2.97"))),
    bad("reproduce: printed nan", REPRODUCE,
        _PROTO_ERROR + r"reference\.uci-boston\.rmse: expected 'MEAN ± SPREAD' as printed; got 'nan ± 0\.19'",
        proto(replaced('rmse = "2.97 ± 0.19"', 'rmse = "nan ± 0.19"'))),
    bad("reproduce: metric typo", REPRODUCE,
        _PROTO_ERROR + r"reference\.uci-boston\.rmsee: unknown metric 'rmsee'\. Did you mean 'rmse'\? .*",
        proto(replaced('rmse = "2.97 ± 0.19"', 'rmsee = "2.97 ± 0.19"'))),
    bad("reproduce: reference task not planned", REPRODUCE,
        _PROTO_ERROR + r"reference\.uci-bostn: not one of the plan's tasks",
        proto(replaced("[reference.uci-boston]", "[reference.uci-bostn]"))),
    bad("reproduce: splits 0", REPRODUCE,
        _PROTO_ERROR + r"reference\.uci-boston\.splits: expected a positive integer; got 0",
        proto(replaced('splits = 20\nrmse = "2.97', 'splits = 0\nrmse = "2.97'))),
    bad("reproduce: method not planned", REPRODUCE,
        _PROTO_ERROR + r"reference\.method: 'map' is not one of the plan's methods \(mc-dropout\)",
        proto(replaced('method = "mc-dropout"', 'method = "map"'))),
    bad("reproduce: plan without methods", REPRODUCE, _PROTO_ERROR + r"plan: a protocol names its methods and tasks",
        proto(replaced('methods = ["mc-dropout"]\n', ""))),
    bad("reproduce: bad setting", REPRODUCE,
        _PROTO_ERROR + r"set\.epochs: 'epochs' of the training recipe must be at least 1; got -400",
        proto(replaced("epochs = 400", "epochs = -400"))),
    bad("reproduce: unknown table", REPRODUCE,
        _PROTO_ERROR + r"unknown table or key 'bogus'; expected: plan, set, search, protocol, reference",
        proto(lambda t: t + "\n[bogus]\nx = 1\n")),
    bad("reproduce --datasets nosuch", ("reproduce", "gal2016", "--datasets", "nosuch", "--no-run", "--out", "{store}"),
        r"--datasets 'nosuch': protocol 'gal2016' has no such dataset; it has: boston, concrete, .*"),
    bad("reproduce --datasets ,", ("reproduce", "gal2016", "--datasets", ",", "--no-run", "--out", "{store}"),
        r"--datasets ',': expected comma-separated names"),
    *(bad(f"reproduce --k {text}", ("reproduce", "gal2016", "--k", text, "--no-run", "--out", "{store}"),
          rf"--k {shown}: must be a positive, finite number")
      for text, shown in (("0", r"0\.0"), ("-1", r"-1\.0"), ("nan", "nan"), ("inf", "inf"), ("1e400", "inf"))),
    bad("reproduce --k abc", ("reproduce", "gal2016", "--k", "abc", "--no-run", "--out", "{store}"),
        r"Invalid value for '--k': .* \(see `uqbench reproduce --help`\)"),
    bad("reproduce --splits 0", ("reproduce", "gal2016", "--splits", "0", "--no-run", "--out", "{store}"),
        r"--splits 0: must be at least 1"),
    bad("reproduce --seeds 0", ("reproduce", "gal2016", "--seeds", "0", "--no-run", "--out", "{store}"),
        r"--seeds 0: must be at least 1"),
    bad("reproduce --seeds -1", ("reproduce", "gal2016", "--seeds", "-1", "--no-run", "--out", "{store}"),
        r"--seeds -1: must be at least 1"),
    bad("reproduce --format xml", ("reproduce", "gal2016", "--format", "xml", "--no-run", "--out", "{store}"),
        r"--format 'xml': expected one of table, markdown, csv, json, latex"),
    bad("reproduce --data-dir a file", ("reproduce", "gal2016", "--datasets", "boston", "--splits", "1", "--out", "{store}",
                                        "--data-dir", "{afile}"),
        r"uci-boston: file not found: {afile}/bostonHousing/data/data\.txt .*"),
]

def _zero_link(name: str) -> Setup:
    """{name} (a path of the row's folder) made a link to /dev/zero: a file of endless bytes."""
    return lambda c: c.paths[name].symlink_to("/dev/zero")


IGNORED = r"would do nothing: give (it|them) without {mode}, or leave (it|them) out"
SECOND_SWEEP = [  # what the second hostile sweep found, kept as rows
    bad("check: a baseline linked to /dev/zero", ("check", "{cfg}", "--results", "{store}"),
        r"baseline '{cfg}': cannot read it \(not a regular file\)", _zero_link("cfg")),
    bad("run --config linked to /dev/zero", (*RUN, "--config", "{cfg}"),
        r"{cfg}: cannot read it \(not a regular file\)", _zero_link("cfg")),
    bad("reproduce a protocol linked to /dev/zero", ("reproduce", "{proto}", "--no-run", "--out", "{store}"),
        r"{proto}: cannot read it \(not a regular file\)", _zero_link("proto")),
    bad("compare --no-run --force", (*NO_RUN, "--force"),
        r"--no-run runs nothing, so --force " + IGNORED.format(mode="--no-run")),
    bad("compare --no-run --jobs 2 --save-predictions", (*NO_RUN, "--jobs", "2", "--save-predictions"),
        r"--no-run runs nothing, so --save-predictions, --jobs " + IGNORED.format(mode="--no-run")),
    bad("compare --dry-run --no-run", (*NO_RUN, "--dry-run"),
        r"--dry-run runs nothing, so --no-run " + IGNORED.format(mode="--dry-run")),
    bad("run --dry-run --force --threads 1", (*RUN, "--dry-run", "--force", "--threads", "1"),
        r"--dry-run runs nothing, so --force, --save-predictions, --threads " + IGNORED.format(mode="--dry-run")),
    bad("reproduce --no-run --jobs 2", (*REPRODUCE, "--jobs", "2"),
        r"--no-run runs nothing, so --jobs " + IGNORED.format(mode="--no-run")),
    bad("run --device cuda without one, into a new folder", ("run", "map", "--task", "two-moons", "--device", "cuda",
                                                              "--out", "{missing}"),
        r"--device cuda: no CUDA device is available; use --device cpu or auto"),
    bad("run fp16 on the CPU, into a new folder", ("run", "map", "--task", "two-moons", "--device", "cpu", "--set",
                                                    "precision=fp16", "--out", "{missing}"),
        r"precision 'fp16' needs a CUDA device; this run is on cpu \(use bf16 or fp32\)"),
    bad("compare --threads 0", (*COMPARE, "--threads", "0"), r"--threads 0: must be between 1 and 4096"),
    bad("compare --executor ray --address nobody listens", (*COMPARE, "--executor", "ray", "--address", "127.0.0.1:1"),
        r"--address '127\.0\.0\.1:1': no Ray cluster answers there \(Connection refused\)"),
    bad("compare --executor ray --address not HOST:PORT", (*COMPARE, "--executor", "ray", "--address", "nowhere"),
        r"--address 'nowhere': expected auto or HOST:PORT"),
    Row("plot: a record of a method not installed", PLOT, 0,
        (r"note: {store}/[0-9a-f]{{16}}\.json: unknown method 'nosuch'\..*; so run [0-9a-f]{{16}} \(nosuch on "
         r"two-moons, seed 0 split 0\) is not drawn",), lambda c: _rekeyed(c, method="nosuch"), stdout=r"(.*\.png\n)+"),
]


def _rekeyed(c: Ctx, **changes: object) -> None:
    """Seed 0's record (and predictions) under the key with `changes`: a valid record this installation cannot
    rebuild (e.g. of a plugin method that is not installed)."""
    from uqbench.results import RunKey

    data = _record_json(c)
    key = RunKey(**{**data["key"], **changes})
    data.update(key={**data["key"], **changes}, id=key.id, predictions=f"{key.id}.npz")
    c.npz.rename(c.store / f"{key.id}.npz")
    c.record.unlink()
    (c.store / f"{key.id}.json").write_text(json.dumps(data, indent=2))

ROWS = OPTION_VALUES + USAGE + CONFIG_FILES + STORES + PLOTS + CHECKS + PATHS + REPRODUCE_ROWS + SECOND_SWEEP


def test_the_table_is_large_and_its_names_unique():
    assert len(ROWS) >= 80
    assert len({r.name for r in ROWS}) == len(ROWS), [r.name for r in ROWS if [x.name for x in ROWS].count(r.name) > 1]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_hostile_input(cli, prepared, tmp_path, torch_state, row: Row):
    c = _ctx(tmp_path, prepared)
    if row.setup is not None:
        row.setup(c)
    values = c.values()
    before = _tree(tmp_path)
    result = cli(*(a.format(**values) for a in row.args))

    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == row.code, result.output
    lines = result.stderr.splitlines()
    escaped = {k: re.escape(v) for k, v in values.items()}
    expected = [p.format(**escaped) for p in row.lines]
    assert len(lines) == len(expected), result.stderr
    for line, pattern in zip(lines, expected):
        assert re.fullmatch(pattern, line), f"{line!r}\n does not match\n{pattern!r}"
    if row.stdout is not None:
        assert re.fullmatch(row.stdout.format(**escaped), result.stdout, re.DOTALL), result.stdout
    after = _tree(tmp_path)
    if row.mode == QUARANTINED:
        _assert_quarantined(c, before, after, renewed_predictions="--save-predictions" in row.args)
    else:
        figures = {k for k in after if k == "figs" or k.startswith("figs/")} if row.code == 0 else set()
        assert {k: v for k, v in after.items() if k not in figures} == before


def _assert_quarantined(c: Ctx, before: dict[str, tuple], after: dict[str, tuple], renewed_predictions: bool) -> None:
    """Seed 0's unusable record is in quarantine/ unchanged, its run has a new record (and, run with
    --save-predictions, new predictions), nothing else changed."""
    store = c.store.relative_to(c.tmp).as_posix()
    bad = f"{store}/{c.s0}.json"
    folder = f"{store}/{QUARANTINE}"
    moved = [k for k in after if k.startswith(folder + "/") and k.count("/") == folder.count("/") + 1]
    assert len(moved) == 1, moved
    (aside,) = moved

    def under(tree, top):
        return {k[len(top):]: v for k, v in tree.items() if k == top or k.startswith(top + "/")}

    assert under(after, aside) == under(before, bad)  # moved as it was: bytes, link target or folder
    assert ResultStore(c.store).get(c.s0) is not None  # its run ran again, and its new record is whole
    renewed = {f"{store}/{c.s0}.npz"} if renewed_predictions else set()
    untouched = {k: v for k, v in before.items() if not (k == bad or k.startswith(bad + "/")) and k not in renewed}
    rest = {k: v for k, v in after.items() if not (k == folder or k.startswith(folder + "/")) and k != bad
            and k not in renewed}
    assert rest == untouched
