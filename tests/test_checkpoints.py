"""Mid-run checkpoints: a training call interrupted and resumed gives, to the last bit, what an uninterrupted call
gives; a killed run resumes from its checkpoint and trains only the remaining epochs; unusable checkpoint files are
ignored; checkpoints go when the record (or the artifact) is stored; `--checkpoint-every` is checked."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from uqbench.checkpoints import CHECKPOINTS, Checkpoint, Checkpoints
from uqbench.results import ResultStore
from uqbench.runner import Runner, RunOptions
from uqbench.spec import resolve
from uqbench.training import FlatAdam, TrainConfig, fit_module, seeded

EVERY, STOP = 2, 5  # checkpoints every 2 epochs; the interrupted call stops before epoch 5 (its last: after 4)


class Interrupted(Exception):
    """Raised from `on_epoch_start`: the call dies in the middle, as a killed process would."""


class Killed(BaseException):
    """Raised from a run's progress: like a SIGKILL, nothing in the run catches it."""


def _data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return x, torch.sin(x @ torch.tensor([[1.0], [-2.0], [0.5]])) + 0.3 * torch.randn(n, 1, generator=g)


def _noisy(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x + 0.1 * torch.randn(x.shape, generator=g)


CASES = {  # name -> TrainConfig fields, and what else the call has
    "dropout": dict(cfg=dict(epochs=12), dropout=0.3),
    "early-stopping": dict(cfg=dict(epochs=60, lr=0.03, patience=3), early=True),
    "augmentation": dict(cfg=dict(epochs=12), augment=True),
    "cosine": dict(cfg=dict(epochs=12, schedule="cosine")),
    "sgd": dict(cfg=dict(epochs=12, optimizer="sgd", lr=0.02, grad_clip=1.0), dropout=0.1),
    "loss-generator": dict(cfg=dict(epochs=12), noise=True),  # the loss draws from a generator of its own
    "outside-parameter": dict(cfg=dict(epochs=12), scale=True),  # an optimised parameter the module lacks
}


def _fit(case: str, checkpoint: Checkpoint | None = None, stop: int | None = None):
    """One call of `fit_module` for `case` (interrupted before epoch `stop`); returns (module, result, the epochs
    it started, the global RNG state after it)."""
    how = CASES[case]
    early = how.get("early", False)
    started: list[int] = []

    def on_epoch_start(epoch: int) -> None:
        if epoch == stop:
            raise Interrupted()
        started.append(epoch)

    with seeded(0):
        module = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Dropout(how.get("dropout", 0.0)), nn.Linear(16, 1))
        noise, scale = torch.Generator().manual_seed(7), nn.Parameter(torch.ones(1))

        def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            target = y + 0.05 * torch.randn(y.shape, generator=noise) if how.get("noise") else y
            return ((module(x) * (scale if how.get("scale") else 1.0) - target) ** 2).mean()

        val = _data(32, seed=1) if early else None
        result = fit_module(module, loss, _data(), TrainConfig(batch_size=16, **how["cfg"]), seed=3, val=val,
                            params=[*module.parameters(), scale] if how.get("scale") else None,
                            val_loss_fn=(lambda x, y: ((module(x) - y) ** 2).sum(1)) if early else None,
                            batch_transform=_noisy if how.get("augment") else None, on_epoch_start=on_epoch_start,
                            checkpoint=checkpoint, generators=(noise,) if how.get("noise") else ())
        return (module, scale), result, started, torch.get_rng_state()


def _checkpoint(root: Path, ordinal: int = 0, every: int = EVERY) -> Checkpoint:
    return Checkpoint(root / "artifacts", "0123456789abcdef", ordinal, every)


def _same(a, b) -> None:
    """Two `_fit` outcomes are identical: weights and buffers, losses, result, the RNG afterwards."""
    ((ma, scale_a), ra, _, rng_a), ((mb, scale_b), rb, _, rng_b) = a, b
    sa, sb = ma.state_dict(), mb.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(scale_a, scale_b)
    assert ra == rb  # epochs_run, final_loss, best_val_loss, history, val_history: exact floats
    assert torch.equal(rng_a, rng_b)


@pytest.mark.parametrize("case", list(CASES))
def test_an_interrupted_call_resumes_bit_identical_and_trains_only_the_rest(tmp_path, torch_state, case):
    reference = _fit(case)
    with pytest.raises(Interrupted):
        _fit(case, _checkpoint(tmp_path), stop=STOP)
    checkpoint = _checkpoint(tmp_path)
    resumed = _fit(case, checkpoint)
    _same(resumed, reference)
    assert checkpoint.resumed_at == STOP - 1
    assert resumed[2] == list(range(STOP - 1, reference[1].epochs_run))  # only the epochs after the checkpoint
    if case == "early-stopping":
        assert STOP < reference[1].epochs_run < CASES[case]["cfg"]["epochs"]  # it stopped early, after resuming


def test_a_finished_call_is_loaded_not_trained(tmp_path, torch_state):
    first = _fit("early-stopping", _checkpoint(tmp_path))
    checkpoint = _checkpoint(tmp_path)
    again = _fit("early-stopping", checkpoint)
    _same(again, first)
    assert again[2] == [] and checkpoint.resumed_at == first[1].epochs_run


def test_flat_adam_state_round_trip(torch_state):
    x, y = _data()

    def make() -> tuple[nn.Module, FlatAdam]:
        with seeded(0):
            net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
        groups = [{"params": list(net[0].parameters())}, {"params": list(net[2].parameters()), "weight_decay": 0.0}]
        return net, FlatAdam(groups, lr=0.01, eps=1e-8, weight_decay=1e-2, decoupled=True)

    def step(net: nn.Module, opt: FlatAdam) -> None:
        opt.zero_grad()
        ((net(x) - y) ** 2).mean().backward()
        opt.step()

    a, opt_a = make()
    for _ in range(3):
        step(a, opt_a)
    opt_a.param_groups[1]["lr"] = 0.003  # as a schedule does
    saved = torch.load(_save(opt_a.state_dict()), weights_only=True)
    b, opt_b = make()
    b.load_state_dict(a.state_dict())
    opt_b.load_state_dict(saved)
    assert opt_b.param_groups[1]["lr"] == 0.003 and opt_b._flat[0]["t"] == 3
    for _ in range(3):
        step(a, opt_a)
        step(b, opt_b)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    _, opt_other = make()
    before = opt_other.state_dict()
    with pytest.raises(ValueError, match="another optimiser"):
        opt_other.load_state_dict({**saved, "flat": saved["flat"][:1]})
    assert torch.equal(opt_other.state_dict()["flat"][0]["m"], before["flat"][0]["m"])


def _save(obj) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def _interrupted(tmp_path: Path) -> Path:
    """A real checkpoint of the 'dropout' case, interrupted before epoch STOP; returns its path."""
    with pytest.raises(Interrupted):
        _fit("dropout", _checkpoint(tmp_path), stop=STOP)
    return _checkpoint(tmp_path).path


def _non_finite(path: Path) -> None:
    stored = torch.load(path, weights_only=True)
    name = next(iter(stored["state"]["module"]))
    stored["state"]["module"][name][0] = float("nan")
    torch.save(stored, path)


def _foreign_label(path: Path) -> None:  # another run's checkpoint copied over this one's name
    stored = torch.load(path, weights_only=True)
    stored["checkpoint"]["owner"] = "fedcba9876543210"
    torch.save(stored, path)


class _Pickled:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("damage", {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "garbage": lambda p: p.write_bytes(b"not a checkpoint"),
    "empty": lambda p: p.write_bytes(b""),
    "non-finite": _non_finite,
    "another run's": _foreign_label,
    "another call's": lambda p: p.write_bytes(_other_call(p)),
    "a link": lambda p: (p.rename(p.with_name("elsewhere.pt")), p.symlink_to(p.with_name("elsewhere.pt"))),
    "a pickled callable": lambda p: torch.save({"checkpoint": torch.load(p, weights_only=True)["checkpoint"],
                                                "state": _Pickled()}, p),
}.items(), ids=lambda d: d[0])
def test_an_unusable_checkpoint_is_ignored_and_the_call_trains_from_scratch(tmp_path, torch_state, damage, capsys):
    reference = _fit("dropout")
    damage[1](_interrupted(tmp_path))
    checkpoint = _checkpoint(tmp_path)
    again = _fit("dropout", checkpoint)
    _same(again, reference)
    assert checkpoint.resumed_at is None and again[2] == list(range(CASES["dropout"]["cfg"]["epochs"]))
    assert "pwned" not in capsys.readouterr().out


def _other_call(path: Path) -> bytes:
    """The bytes of the checkpoint of another call of the same run (ordinal 1: the same training, another label)."""
    with pytest.raises(Interrupted):
        _fit("dropout", Checkpoint(path.parents[1], "0123456789abcdef", 1, EVERY), stop=STOP)
    return path.with_name(path.name.replace("-0.pt", "-1.pt")).read_bytes()


def test_a_checkpoint_of_other_training_is_ignored(tmp_path, torch_state):
    """Same run and call, but another recipe (more epochs): its digest differs, so it is not resumed."""
    _interrupted(tmp_path)
    CASES["longer"] = {**CASES["dropout"], "cfg": {**CASES["dropout"]["cfg"], "epochs": 14}}
    try:
        reference, checkpoint = _fit("longer"), _checkpoint(tmp_path)
        _same(_fit("longer", checkpoint), reference)
        assert checkpoint.resumed_at is None
    finally:
        del CASES["longer"]


def test_a_forced_run_ignores_checkpoints_older_than_its_command(tmp_path, torch_state):
    _interrupted(tmp_path)
    checkpoint = Checkpoint(tmp_path / "artifacts", "0123456789abcdef", 0, EVERY, refresh_since=time.time() + 60)
    _fit("dropout", checkpoint)
    assert checkpoint.resumed_at is None


# -- whole runs ---------------------------------------------------------------------------------------------------
def _checkpoint_files(out: Path) -> list[str]:
    folder = out / "artifacts" / CHECKPOINTS
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


class _KillAfter:
    """A run's progress that raises Killed at the `n`-th epoch of its `stage`-th training call (1-based)."""

    def __init__(self, stage: int, n: int):
        self.stage, self.n, self.calls, self.epochs = stage, n, 0, 0

    def start(self, description: str, total: int) -> None:
        self.calls, self.epochs = self.calls + 1, 0

    def advance(self, loss: float) -> None:
        self.epochs += 1
        if self.calls == self.stage and self.epochs == self.n:
            raise Killed()

    def stop(self) -> None:
        pass


def test_an_ensemble_killed_in_its_second_training_call_resumes(tmp_path, torch_state):
    """`ensemble` with the MAP network as member 0 trains twice: the MAP artifact (stored when done), then the
    other members (the run's own call 0). Killed in the second, the re-run loads the first and resumes the second."""
    spec = resolve("ensemble", "toy-regression", ["epochs=16", "members=3", "heteroscedastic=false"], seed=0)
    reference = Runner(RunOptions(out=tmp_path / "reference", checkpoint_every=0)).execute(spec)
    out = tmp_path / "out"
    with pytest.raises(Killed):
        Runner(RunOptions(out=out, checkpoint_every=4, progress=_KillAfter(stage=2, n=10))).execute(spec)
    assert _checkpoint_files(out) == [f"{spec.id}-0.pt"]  # the MAP artifact's went when it was stored
    record, fresh = Runner(RunOptions(out=out, checkpoint_every=4)).run(spec)
    assert fresh and record.status == "ok" and record.metrics == reference.metrics
    assert record.id == reference.id
    # the MAP network was loaded from the artifact store, so (as for any run that reuses it) it has no curve here
    assert [c["stage"] for c in reference.curves] == ["Network", "StackedNetworks"]
    assert record.curves == reference.curves[1:]
    assert record.info["resumed"] == [{"checkpoint": f"{spec.id}-0", "epochs": 8}]
    assert ResultStore(out).get(spec.id).info == record.info  # type: ignore[union-attr]
    assert _checkpoint_files(out) == []  # deleted once the record was stored


def test_an_augmented_ensemble_resumes(tmp_path, torch_state, monkeypatch):
    """`ensemble` augments its members' batches with a generator of its own (the loss draws from it): its state
    is in the checkpoint too, or the resumed run would draw other augmentations."""
    import dataclasses

    from uqbench.tasks.synthetic import TwoMoons

    load = TwoMoons.load
    monkeypatch.setattr(TwoMoons, "load", lambda self, seed, split: dataclasses.replace(
        load(self, seed, split), train_transform=_noisy))
    spec = resolve("ensemble", "two-moons", ["epochs=8", "members=2"], seed=0)
    reference = Runner(RunOptions(out=tmp_path / "reference", checkpoint_every=0)).execute(spec)
    out = tmp_path / "out"
    with pytest.raises(Killed):
        Runner(RunOptions(out=out, checkpoint_every=EVERY, progress=_KillAfter(stage=2, n=5))).execute(spec)
    record = Runner(RunOptions(out=out, checkpoint_every=EVERY)).execute(spec)  # member 0, the MAP network, loaded
    assert record.status == "ok" and record.metrics == reference.metrics and record.curves == reference.curves[1:]
    assert record.info["resumed"] == [{"checkpoint": f"{spec.id}-0", "epochs": 4}]


def test_a_run_killed_while_training_its_artifact_resumes_the_artifact(tmp_path, torch_state):
    """The MAP network's checkpoints are the artifact's: another method that needs it (laplace) resumes it."""
    map_spec = resolve("map", "toy-regression", ["epochs=20"], seed=0)
    out = tmp_path / "out"
    with pytest.raises(Killed):
        Runner(RunOptions(out=out, checkpoint_every=5, progress=_KillAfter(stage=1, n=12))).execute(map_spec)
    (name,) = _checkpoint_files(out)
    assert name.startswith("map-") and name.endswith("-0.pt")
    spec = resolve("laplace", "toy-regression", ["epochs=20"], seed=0)
    reference = Runner(RunOptions(out=tmp_path / "reference", checkpoint_every=0)).execute(spec)
    record, _ = Runner(RunOptions(out=out, checkpoint_every=5)).run(spec)
    assert record.metrics == reference.metrics
    assert record.info["resumed"] == [{"checkpoint": name.removesuffix(".pt"), "epochs": 10}]
    assert _checkpoint_files(out) == []


def test_a_failed_artifact_training_discards_its_checkpoints(tmp_path, torch_state):
    from uqbench.artifacts import ArtifactCache

    cache, checkpoints = ArtifactCache(tmp_path / "artifacts"), Checkpoints(tmp_path / "artifacts", "r" * 16, EVERY)

    def train(module: nn.Module) -> None:
        checkpoint = checkpoints.next(cache.training)
        x, y = _data()
        fit_module(module, lambda a, b: ((module(a) - b) ** 2).mean(), (x, y), TrainConfig(epochs=4), seed=0,
                   checkpoint=checkpoint)
        assert _checkpoint_files(tmp_path) == [f"{checkpoint.name}.pt"]
        raise ValueError("the method fails after training")

    with pytest.raises(ValueError):
        cache.get_or_train("map", {"k": 1}, lambda: nn.Linear(3, 1), train, seed=0)
    assert _checkpoint_files(tmp_path) == []


def _cli(out: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "uqbench", "run", "map", "--task", "toy-regression", "--set", f"epochs={epochs}",
            "--checkpoint-every", "10", "--out", str(out), "--quiet", "--json"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "UQBENCH_NO_PLUGINS": "1"}


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.parametrize("epochs", [60, pytest.param(200, marks=pytest.mark.slow)])
def test_a_run_killed_with_sigkill_resumes_from_its_checkpoint(tmp_path, epochs):
    """The issue's test: `run map --set epochs=200 --checkpoint-every 10` killed after its first checkpoint (and
    the same with 60 epochs, at a third of the cost, in the default suite); the
    re-run's record has the metrics of an uninterrupted run (no checkpoints, another folder, in this process: the
    same thread count), to the last bit."""
    out = tmp_path / "out"
    killed = subprocess.Popen(_cli(out, epochs), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    deadline = time.monotonic() + 120
    while not _checkpoint_files(out) or any(n.startswith(".") for n in _checkpoint_files(out)):
        assert killed.poll() is None, killed.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert not list(out.glob("*.json"))  # it died before storing a record
    (name,) = [n for n in _checkpoint_files(out) if not n.startswith(".")]

    again = subprocess.run(_cli(out, epochs), capture_output=True, text=True, timeout=600, env=_env())
    assert again.returncode == 0, again.stderr
    (record,) = json.loads(again.stdout)
    spec = resolve("map", "toy-regression", [f"epochs={epochs}"], seed=0)
    uninterrupted = Runner(RunOptions(out=tmp_path / "reference", checkpoint_every=0)).execute(spec)
    assert record["id"] == uninterrupted.id  # --checkpoint-every is not in the run's key
    assert record["metrics"] == uninterrupted.metrics and record["curves"] == uninterrupted.curves
    (resumed,) = record["info"]["resumed"]  # how many epochs the re-run took from the checkpoint
    assert resumed["checkpoint"] == name.removesuffix(".pt") and resumed["epochs"] % 10 == 0
    assert 10 <= resumed["epochs"] < epochs
    assert "resumed" not in uninterrupted.info
    assert _checkpoint_files(out) == []  # deleted when the record was stored


@pytest.mark.parametrize("value,message", [
    ("-1", "--checkpoint-every -1: must be 0 (no checkpoints) or a number of epochs"),
    ("1.5", "Invalid value for '--checkpoint-every'"),
    ("ten", "Invalid value for '--checkpoint-every'"),
])
@pytest.mark.parametrize("command", ["run", "compare"])
def test_checkpoint_every_values_are_checked(cli, tmp_path, command, value, message):
    args = ["map", "--task", "two-moons"] if command == "run" else ["--tasks", "two-moons", "--methods", "map"]
    result = cli(command, *args, "--epochs", "1", "--checkpoint-every", value, "--out", tmp_path)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert not list(tmp_path.glob("*.json"))


def test_checkpoint_every_with_dry_run_is_refused(cli, tmp_path):
    result = cli("run", "map", "--task", "two-moons", "--dry-run", "--checkpoint-every", "5", "--out", tmp_path)
    assert result.exit_code == 2 and "--checkpoint-every would do nothing" in result.stderr


def test_workers_get_the_checkpoint_interval(tmp_path):
    from uqbench.driver import make_executor
    from uqbench.executors import _worker_runner

    pool = make_executor(Runner(RunOptions(out=tmp_path, checkpoint_every=3)), jobs=2)
    assert pool.options.checkpoint_every == 3  # type: ignore[attr-defined]
    assert _worker_runner(pool.options).options.checkpoint_every == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize("method,settings", [
    ("map", []), ("mc-dropout", []), ("sngp", []), ("vbll", []),
    ("vbll", ["training=post"]), ("laplace", []), ("ensemble", ["members=3"]),
], ids=lambda v: v if isinstance(v, str) else ",".join(v) or "-")
def test_every_method_killed_in_its_last_training_call_resumes(tmp_path, torch_state, method, settings):
    """Each built-in method, killed in its last training call (after a MAP network it starts from, if it has
    one), resumes to the metrics of an uninterrupted run: SNGP's precision buffers, VBLL's heads, dropout."""
    spec = resolve(method, "two-moons", ["epochs=12", *settings], seed=0)
    reference = Runner(RunOptions(out=tmp_path / "reference", checkpoint_every=0)).execute(spec)
    out = tmp_path / "out"
    with pytest.raises(Killed):  # the last call: after the others (a MAP network) have finished
        Runner(RunOptions(out=out, checkpoint_every=4, progress=_KillAfter(len(reference.curves), 7))).execute(spec)
    record = Runner(RunOptions(out=out, checkpoint_every=4)).execute(spec)
    assert record.status == "ok" and record.metrics == reference.metrics
    assert [r["epochs"] for r in record.info["resumed"]] == [4]
