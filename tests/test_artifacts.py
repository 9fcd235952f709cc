"""The artifact cache: a stored network file is read back as plain weights only."""

from __future__ import annotations

import pytest
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
    assert stored["state"].keys() == module.state_dict().keys()
    (tmp_path / "live.pt").write_bytes(payload)
    torch.load(tmp_path / "live.pt", weights_only=False)  # the payload is live: an unrestricted load runs it
    assert marker.exists()


def _train_to(value: float):
    def train(module: nn.Module) -> None:
        with torch.no_grad():
            for p in module.parameters():
                p.fill_(value)
    return train


def _stored(directory, key):
    cache = ArtifactCache(directory)
    module, artifact_id = cache.get_or_train("map", key, lambda: nn.Linear(2, 1), _train_to(1.0), seed=0)
    return directory / f"{artifact_id}.pt", module


def _state(path):
    return torch.load(path, weights_only=True)


BAD_FILES = {
    "truncated": lambda path, other: path.write_bytes(path.read_bytes()[:40]),
    "empty": lambda path, other: path.write_bytes(b""),
    "plain weights without a label": lambda path, other: torch.save(_state(path)["state"], path),
    "another key's file copied over it": lambda path, other: path.write_bytes(other.read_bytes()),
    "other shapes": lambda path, other: torch.save(
        {**_state(path), "state": {"weight": torch.ones(3, 2), "bias": torch.ones(3)}}, path),
    "other dtypes": lambda path, other: torch.save(
        {**_state(path), "state": {k: v.double() for k, v in _state(path)["state"].items()}}, path),
    "a missing tensor": lambda path, other: torch.save(
        {**_state(path), "state": {"weight": _state(path)["state"]["weight"]}}, path),
    "non-finite weights": lambda path, other: torch.save(
        {**_state(path), "state": {k: torch.full_like(v, float("nan")) for k, v in _state(path)["state"].items()}},
        path),
    "a list": lambda path, other: torch.save([1, 2], path),
}


@pytest.mark.parametrize("damage", BAD_FILES, ids=list(BAD_FILES))
def test_a_stored_network_that_is_not_this_keys_is_retrained_and_replaced(tmp_path, damage):
    directory = tmp_path / "artifacts"
    directory.mkdir()
    path, _ = _stored(directory, {"task": "t", "seed": 0})
    other, _ = _stored(directory, {"task": "t", "seed": 1})
    BAD_FILES[damage](path, other)
    cache, trained = ArtifactCache(directory), []
    module, artifact_id = cache.get_or_train("map", {"task": "t", "seed": 0}, lambda: nn.Linear(2, 1),
                                             lambda m: (trained.append(m), _train_to(2.0)(m)), seed=0)
    assert len(trained) == 1 and cache.used == {artifact_id: "trained"}
    stored = _state(path)
    assert stored["artifact"]["id"] == artifact_id == path.stem
    assert all(torch.equal(stored["state"][k], v) for k, v in module.state_dict().items())
    assert module.weight.detach()[0, 0].item() == 2.0


def test_a_stored_network_of_this_key_is_loaded_not_retrained(tmp_path):
    directory = tmp_path / "artifacts"
    directory.mkdir()
    path, first = _stored(directory, {"task": "t"})
    cache, trained = ArtifactCache(directory), []
    module, artifact_id = cache.get_or_train("map", {"task": "t"}, lambda: nn.Linear(2, 1), trained.append, seed=0)
    assert trained == [] and cache.used == {artifact_id: "loaded"}
    assert torch.equal(module.weight, first.weight)
