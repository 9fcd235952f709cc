"""Shared fixtures and the --runslow switch (slow and gpu tests are skipped by default)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

SHARED_UCI = Path(__file__).resolve().parents[2] / "shared" / "uci"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow or gpu")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow or gpu test: run with --runslow")
    for item in items:
        if "slow" in item.keywords or "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def no_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed third-party plugins must not change what the tests see."""
    monkeypatch.setenv("UQBENCH_NO_PLUGINS", "1")


@pytest.fixture
def shared_uci() -> Path:
    """The standard UCI split files in ../shared/uci (development machines only)."""
    if not SHARED_UCI.is_dir():
        pytest.skip(f"real UCI data not found at {SHARED_UCI}")
    return SHARED_UCI


@pytest.fixture
def torch_state():
    """Restore torch's global RNG, default dtype and thread count after a test that changes them."""
    import torch

    rng, dtype, threads = torch.get_rng_state(), torch.get_default_dtype(), torch.get_num_threads()
    yield
    torch.set_rng_state(rng)
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


@pytest.fixture
def cli():
    """Invoke the Typer app in-process; the result keeps stdout and stderr apart."""
    from uqbench.cli import app

    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture
def custom_backbones():
    """Forget every backbone factory a test registers (`uqbench.models.custom`); the built-in architectures are
    registered first, so the snapshot holds them."""
    from uqbench.models import ARCHITECTURES, DEFAULT_SIZES, _register_builtins
    from uqbench.models import custom

    _register_builtins()
    saved = dict(ARCHITECTURES), dict(DEFAULT_SIZES), dict(custom.CUSTOM)
    yield
    for table, before in zip((ARCHITECTURES, DEFAULT_SIZES, custom.CUSTOM), saved):
        table.clear()
        table.update(before)
