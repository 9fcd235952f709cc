"""The artifact cache: a stored network file is read back as plain weights only."""

from __future__ import annotations

import torch
from torch import nn

from uqbench.artifacts import ArtifactCache
from uqbench.config import content_hash


class _Touch:
    """Unpickling this runs code (it creates `path`): what a planted .pt could carry."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return exec, (f"open({str(self.path)!r}, 'w').close()",)


def test_a_planted_pt_with_a_pickled_callable_is_refused_unrun_and_retrained(tmp_path):
    marker, directory, key = tmp_path / "pwned", tmp_path / "artifacts", {"task": "t"}
    directory.mkdir()
    planted = directory / f"map-{content_hash(key)}.pt"
    torch.save({"weight": _Touch(marker)}, planted)
    payload = planted.read_bytes()
    trained = []
    cache = ArtifactCache(directory)
    module, artifact_id = cache.get_or_train("map", key, lambda: nn.Linear(2, 1), trained.append, seed=0)
    assert not marker.exists() and len(trained) == 1 and cache.used == {artifact_id: "trained"}
    assert artifact_id == planted.stem
    stored = torch.load(planted, weights_only=True)  # replaced by the plain weights it trained
    assert stored.keys() == module.state_dict().keys()
    (tmp_path / "live.pt").write_bytes(payload)
    torch.load(tmp_path / "live.pt", weights_only=False)  # the payload is live: an unrestricted load runs it
    assert marker.exists()
