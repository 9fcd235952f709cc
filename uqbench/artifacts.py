"""Cache of trained networks shared between runs (a MAP network reused by laplace, post-trained VBLL, ensembles).

An artifact is identified by a name and a key (the run's key without its method — task, data fingerprint,
recipe, backbone, seed, split, uqbench version — and whatever else the trainer's result depends on); its
weights are stored as `<dir>/<name>-<hash>.pt` together with its id and key (written atomically, read back with
`weights_only=True`). A file that is unreadable, not plain weights, of other shapes or dtypes, not finite, or
stored under another key (a file copied over another's name) is trained again and replaced. A forced
re-run (`--force`) retrains every artifact it uses that was stored before the command started. Building and training run under their own seeded RNG, and the caller's global RNG state
is restored afterwards, so a run gives the same result whether the artifact was trained or loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from uqbench.checkpoints import discard, state_fits
from uqbench.config import canonical_json, content_hash
from uqbench.files import read_weights, subdir, write_atomic
from uqbench.training import seeded


class ArtifactCache:
    """Load-or-train cache of `nn.Module` weights.

    Args:
        directory: where weights are kept; None keeps them in memory only (for this process).
        refresh_since: a stored artifact older than this time (seconds since the epoch) is retrained, not
            loaded; None loads any stored one.
    """

    def __init__(self, directory: Path | None = None, refresh_since: float | None = None):
        self.directory = directory
        self.refresh_since = refresh_since
        self._memory: dict[str, dict[str, torch.Tensor]] = {}
        self.used: dict[str, str] = {}  # artifact id -> 'trained' | 'loaded'
        self.training: str | None = None  # the artifact being trained now: its fits' checkpoints are its own

    def get_or_train(
        self,
        name: str,
        key: dict[str, Any],
        build: Callable[[], nn.Module],
        train: Callable[[nn.Module], None],
        seed: int,
    ) -> tuple[nn.Module, str]:
        """A trained module for (name, key), and its artifact id.

        Args:
            name: kind of artifact, e.g. 'map'.
            key: JSON-ready description of everything the trained weights depend on.
            build: makes a freshly initialised module (also the skeleton weights are loaded into).
            train: trains the module in place.
            seed: seeds the global RNG while building and training.
        """
        artifact_id = f"{name}-{content_hash(key)}"
        label = {"id": artifact_id, "key": canonical_json(key)}
        with seeded(seed):
            module = build()
            state = self._load(artifact_id, label)
            if state is not None and state_fits(module.state_dict(), state):
                module.load_state_dict(state)
                module.eval()
                self.used[artifact_id] = "loaded"
            else:
                self._train(artifact_id, module, train)
                self._store(artifact_id, label, module)
                self.used[artifact_id] = "trained"
        return module, artifact_id

    def _train(self, artifact_id: str, module: nn.Module, train: Callable[[nn.Module], None]) -> None:
        """`train(module)`, its fits checkpointed as the artifact's (see `uqbench.checkpoints`), whose
        checkpoints are deleted once it is stored, or when its training fails (it would fail again)."""
        self.training = artifact_id
        try:
            train(module)
        except Exception:
            self._discard(artifact_id)
            raise
        finally:
            self.training = None

    def _discard(self, artifact_id: str) -> None:
        if self.directory is not None:
            discard(self.directory, artifact_id)

    def _path(self, artifact_id: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{artifact_id}.pt"

    def _load(self, artifact_id: str, label: dict[str, str]) -> dict[str, torch.Tensor] | None:
        if artifact_id in self._memory:
            return self._memory[artifact_id]
        path = self._path(artifact_id)
        if path is None or not path.exists():
            return None
        if self.refresh_since is not None and path.lstat().st_mtime < self.refresh_since:
            return None
        stored = read_weights(path)  # None when unreadable, truncated, a link or not weights: trained again
        if not isinstance(stored, dict) or stored.get("artifact") != label or not isinstance(stored.get("state"), dict):
            return None  # another artifact's file (or an old or foreign one) under this name
        return stored["state"]

    def _store(self, artifact_id: str, label: dict[str, str], module: nn.Module) -> None:
        state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        self._memory[artifact_id] = state
        path = self._path(artifact_id)
        if path is not None:
            folder = subdir(path.parent.parent, path.parent.name)  # never through a planted link
            write_atomic(folder / path.name, lambda fh: torch.save({"artifact": label, "state": state}, fh))
        self._discard(artifact_id)
