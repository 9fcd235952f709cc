"""Mid-run checkpoints: the training state of one `fit_module` call, saved every N epochs, so that a run that was
killed resumes where its last checkpoint left it and gives the record an uninterrupted run gives, to the last bit.

A checkpoint holds everything the rest of the call depends on (`TrainingState`): the module's state (buffers
included), the values of optimised parameters outside the module, the optimiser's, schedule's and gradient scaler's states,
the generators' states (batch order and augmentation, and those a loss draws from), torch's global RNG state
(and the CUDA device's), the epochs done, the loss histories and the early-stopping state. It is written
atomically to `<out>/artifacts/checkpoints/<owner>-<k>.pt` every N epochs and when the call ends: the owner is
the run's id, or the artifact's id for a call made while training a shared artifact (the MAP network), so that
any run that needs the artifact resumes it; k counts the owner's calls. A file is read with `weights_only=True`,
without following a link, and used only when its label (owner, k, and a digest of what the call trains) matches
and every tensor in it is finite; anything else — truncated, foreign, another call's — is ignored and the call
trains from scratch. The run's checkpoints are deleted when its record is stored, an artifact's when it is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from uqbench.config import content_hash
from uqbench.files import read_weights, subdir, write_atomic

if TYPE_CHECKING:
    from uqbench.training import TrainResult

CHECKPOINTS = "checkpoints"  # the folder under the artifacts folder
DEFAULT_EVERY = 10  # epochs between checkpoints (`--checkpoint-every`); 0 turns them off


def state_fits(own: dict[str, Tensor], state: Any) -> bool:
    """Whether `state` holds exactly the tensors of the state dict `own` (names, shapes, dtypes), all finite."""
    return isinstance(state, dict) and own.keys() == state.keys() and all(
        isinstance(state[k], Tensor) and state[k].shape == v.shape and state[k].dtype == v.dtype
        and (not state[k].is_floating_point() or bool(torch.isfinite(state[k]).all())) for k, v in own.items())


def _finite(obj: Any) -> bool:
    """Whether every floating-point tensor inside `obj` (nested dicts, lists, tuples) is finite."""
    if isinstance(obj, Tensor):
        return not obj.is_floating_point() or bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_finite(v) for v in obj)
    return True


def _cpu(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


@dataclass
class TrainingState:
    """The live objects of one `fit_module` call, and its early-stopping state: what a checkpoint saves.

    Attributes:
        generators: the batch order's (also the augmentation's) first, then those the caller's loss draws from.
        best_state: the module's state at the best validation loss so far (early stopping), or None.
        bad_epochs: epochs since the best validation loss.
    """

    module: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    generators: list[torch.Generator]
    result: TrainResult
    best_state: dict[str, Tensor] | None = None
    bad_epochs: int = 0

    def _params(self) -> list[Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _outside(self) -> list[Tensor]:
        """The optimised parameters that are not the module's (the module's are in its state dict)."""
        own = {id(p) for p in self.module.parameters()}
        return [p for p in self._params() if id(p) not in own]

    def _device(self) -> torch.device:
        return next(self.module.parameters()).device

    def describe(self) -> dict[str, Any]:
        """The shapes and kinds of what is trained (JSON-ready), for a checkpoint's digest."""
        return {"module": [[k, list(v.shape), str(v.dtype)] for k, v in self.module.state_dict().items()],
                "params": [list(p.shape) for p in self._params()], "optimizer": type(self.optimizer).__name__,
                "generators": len(self.generators), "device": self._device().type}

    def save(self, done: bool) -> dict[str, Any]:
        """The state as plain tensors and numbers (on the CPU); `done`: the call has finished."""
        device, result = self._device(), self.result
        return {
            "done": done, "epochs": result.epochs_run, "final_loss": result.final_loss,
            "best_val_loss": result.best_val_loss, "history": list(result.history),
            "val_history": list(result.val_history),
            "module": _cpu(self.module.state_dict()),
            "params": [p.detach().cpu().clone() for p in self._outside()],
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generators": [g.get_state() for g in self.generators],
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "best_state": None if self.best_state is None else _cpu(self.best_state),
            "bad_epochs": self.bad_epochs,
        }

    def load(self, saved: dict[str, Any]) -> bool:
        """Restore what `save` returned; returns its `done`. ValueError when it does not fit these objects (then
        nothing has changed yet, except when the optimiser, schedule or scaler refuses it: see `Checkpoint`)."""
        own, params, device = self.module.state_dict(), self._outside(), self._device()
        stored = saved["params"]
        if not (state_fits(own, saved["module"]) and (saved["best_state"] is None or state_fits(own, saved["best_state"]))
                and len(stored) == len(params) and all(isinstance(s, Tensor) and s.shape == p.shape and s.dtype == p.dtype
                                                       for s, p in zip(stored, params))
                and len(saved["generators"]) == len(self.generators)
                and (saved["cuda_rng"] is None) == (device.type != "cuda")
                and len(saved["history"]) == saved["epochs"] and isinstance(saved["done"], bool)):
            raise ValueError("the checkpoint does not fit this call")
        self.module.load_state_dict(saved["module"])
        with torch.no_grad():
            for p, s in zip(params, stored):
                p.copy_(s)
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        for g, s in zip(self.generators, saved["generators"]):
            g.set_state(s)
        torch.set_rng_state(saved["rng"])
        if saved["cuda_rng"] is not None:
            torch.cuda.set_rng_state(saved["cuda_rng"], device)
        best = saved["best_state"]
        self.best_state = None if best is None else {k: v.to(own[k].device) for k, v in best.items()}
        self.bad_epochs = int(saved["bad_epochs"])
        result = self.result
        result.epochs_run, result.final_loss = int(saved["epochs"]), float(saved["final_loss"])
        result.best_val_loss = None if saved["best_val_loss"] is None else float(saved["best_val_loss"])
        result.history, result.val_history = [float(v) for v in saved["history"]], [float(v) for v in saved["val_history"]]
        return saved["done"]


class Checkpoint:
    """Where one `fit_module` call keeps its checkpoint (made by `Checkpoints.next`).

    Attributes:
        every: epochs between checkpoints.
        resumed_at: the epochs the call took from its checkpoint (None: it started from scratch, or has not begun).
    """

    def __init__(self, artifacts: Path, owner: str, ordinal: int, every: int, refresh_since: float | None = None):
        self.artifacts, self.name, self.every = artifacts, f"{owner}-{ordinal}", every
        self.owner, self.ordinal, self.refresh_since = owner, ordinal, refresh_since
        self.resumed_at: int | None = None
        self._label: dict[str, Any] = {}

    @property
    def path(self) -> Path:
        return self.artifacts / CHECKPOINTS / f"{self.name}.pt"

    def resume(self, state: TrainingState, what: dict[str, Any]) -> bool:
        """Restore `state` from the stored checkpoint when there is a usable one; returns whether the call had
        finished. `what` describes the call besides its shapes (data sizes, recipe, seed): part of the label."""
        self._label = {"owner": self.owner, "ordinal": self.ordinal,
                       "digest": content_hash({**what, **state.describe()})}
        saved = self._read()
        if saved is None:
            return False
        fresh = state.save(done=False)
        try:
            done = state.load(saved)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError):
            state.load(fresh)  # a refused optimiser or schedule state may have changed something: start afresh
            return False
        self.resumed_at = state.result.epochs_run
        return done

    def write(self, state: TrainingState, done: bool) -> None:
        """Store `state` (atomically, replacing the previous checkpoint)."""
        content = {"checkpoint": self._label, "state": state.save(done)}
        folder = subdir(self.artifacts.parent, self.artifacts.name, CHECKPOINTS)  # never through a planted link
        write_atomic(folder / self.path.name, lambda fh: torch.save(content, fh))

    def _read(self) -> dict[str, Any] | None:
        try:
            if self.refresh_since is not None and self.path.lstat().st_mtime < self.refresh_since:
                return None  # a forced run starts afresh, as its artifacts do
        except OSError:
            return None
        stored = read_weights(self.path)  # None when absent, unreadable, truncated, a link or not plain tensors
        if not isinstance(stored, dict) or stored.get("checkpoint") != self._label:
            return None  # another call's, another run's or a foreign file under this name
        saved = stored.get("state")
        return saved if isinstance(saved, dict) and _finite(saved) else None


@dataclass
class Checkpoints:
    """The checkpoints of one run's `fit_module` calls; the default (no folder, or `every` 0) keeps none.

    Attributes:
        artifacts: the artifacts folder (`<out>/artifacts`); checkpoints go to its `checkpoints` folder.
        run_id: the owner of the run's own calls.
        every: epochs between checkpoints; 0: none.
        refresh_since: a checkpoint written before this time (a forced run's command start) is ignored.
    """

    artifacts: Path | None = None
    run_id: str = ""
    every: int = 0
    refresh_since: float | None = None
    issued: list[Checkpoint] = field(default_factory=list, init=False, repr=False)
    _calls: Counter = field(default_factory=Counter, init=False, repr=False)

    def next(self, artifact_id: str | None = None) -> Checkpoint | None:
        """The checkpoint of the next call, made for the artifact `artifact_id` (None: for the run itself)."""
        if self.artifacts is None or self.every <= 0:
            return None
        owner = artifact_id or self.run_id
        checkpoint = Checkpoint(self.artifacts, owner, self._calls[owner], self.every, self.refresh_since)
        self._calls[owner] += 1
        self.issued.append(checkpoint)
        return checkpoint

    def resumed(self) -> list[dict[str, Any]]:
        """{"checkpoint": name, "epochs": epochs taken from it} for every call that resumed (for the record)."""
        return [{"checkpoint": c.name, "epochs": c.resumed_at} for c in self.issued if c.resumed_at is not None]


def discard(artifacts: Path, owner: str) -> None:
    """Delete the checkpoints of `owner` (a run or an artifact id), and what a killed write of one left behind;
    nothing when the folder is absent or a link."""
    folder = artifacts / CHECKPOINTS
    if artifacts.is_symlink() or folder.is_symlink() or not folder.is_dir():
        return
    for path in [*folder.glob(f"{owner}-*.pt"), *folder.glob(f".{owner}-*.pt.*.tmp")]:
        if path.name.removeprefix(".").removeprefix(f"{owner}-").split(".")[0].isdigit():
            path.unlink(missing_ok=True)


__all__ = ["CHECKPOINTS", "DEFAULT_EVERY", "Checkpoint", "Checkpoints", "TrainingState", "discard", "state_fits"]
