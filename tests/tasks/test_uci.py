"""UCI tasks: split protocols, standardisation, cards and the checksummed fetch path (pooch and --data-dir).

Most tests write a tiny dataset in the real on-disk layout (`<folder>/data.txt`, `index_*.txt`) into tmp_path with
a matching card; downloads are served from a local HTTP server, so nothing here touches the network. Tests
marked `data` read the real files in ../shared/uci.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from uqbench import datasets
from uqbench.datasets import DatasetCard, fetch, file_sha256, load_card
from uqbench.errors import BadConfig, DataError
from uqbench.tasks import tasks
from uqbench.tasks import Split, uci

UCI_TASKS = [name for name in tasks.names() if name.startswith("uci-")]
FOLDER = "tiny/data"
N_ROWS, N_SPLITS = 50, 3
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: connection refused at once


def write_tiny(root: Path, n_rows: int = N_ROWS) -> dict[str, str]:
    """A 4-column dataset (2 features, one constant column, target = row index) with 3 splits; returns sha256s."""
    rng = np.random.default_rng(0)
    folder = root / FOLDER
    folder.mkdir(parents=True)
    columns = [rng.normal(5, 2, n_rows), rng.uniform(0, 9, n_rows), np.full(n_rows, 0.998), np.arange(n_rows)]
    table = np.column_stack(columns)
    np.savetxt(folder / "data.txt", table, fmt="%.7e")
    (folder / "index_features.txt").write_text("0\n1\n2\n")
    (folder / "index_target.txt").write_text("3\n")
    for k in range(N_SPLITS):
        order = np.random.default_rng(k).permutation(n_rows)
        np.savetxt(folder / f"index_train_{k}.txt", order[: n_rows - 5], fmt="%d")
        np.savetxt(folder / f"index_test_{k}.txt", order[n_rows - 5 :], fmt="%d")
    return {p.name: file_sha256(p) for p in sorted(folder.iterdir())}


def tiny_card(files: dict[str, str], base_url: str = UNREACHABLE) -> DatasetCard:
    real = load_card("uci-yacht")
    shape = {"rows": N_ROWS, "features": 3, "splits": N_SPLITS, "train": N_ROWS - 5, "test": 5}
    facts = {**real.facts, "shape": shape}
    return dataclasses.replace(real, folder=FOLDER, base_url=base_url, files=files, facts=facts)


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`uci-yacht` backed by the tiny dataset in tmp_path/src; returns that data root."""
    files = write_tiny(tmp_path / "src")
    monkeypatch.setattr(uci, "load_card", lambda name: tiny_card(files))
    return tmp_path / "src"


def task(data_dir: Path | None, **config) -> uci.UCITask:
    cls = tasks.get("uci-yacht")
    return cls(cls.Config(**config), data_dir=data_dir)


def original(split, data) -> np.ndarray:
    """Targets of a split back in original units, as ints (they are the row indices)."""
    return np.rint((split.y * data.target_scale + data.target_loc).numpy()[:, 0]).astype(int)


def test_standard_split_uses_the_published_indices(tiny: Path) -> None:
    data = task(tiny).load(seed=0, split=2)
    assert original(data.train, data).tolist() == np.loadtxt(tiny / FOLDER / "index_train_2.txt", dtype=int).tolist()
    assert original(data.test, data).tolist() == np.loadtxt(tiny / FOLDER / "index_test_2.txt", dtype=int).tolist()
    assert data.val is None and data.info == {"protocol": "standard"} and data.out_dim == 1
    assert data.in_shape == (3,) and task(tiny).fingerprint(2) == data.data_sha256
    read = ("data.txt", "index_features.txt", "index_target.txt", "index_train_2.txt", "index_test_2.txt")
    assert data.data_sha256 == {f"{FOLDER}/{n}": file_sha256(tiny / FOLDER / n) for n in read}


def test_standardised_with_training_statistics_and_constant_column_kept_finite(tiny: Path) -> None:
    data = task(tiny).load(seed=0, split=0)
    x = data.train.x.double()
    torch.testing.assert_close(x[:, :2].mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(x[:, :2].std(0, unbiased=False), torch.ones(2, dtype=torch.float64), atol=1e-6, rtol=0)
    assert torch.isfinite(data.test.x).all() and data.train.x[:, 2].abs().max() < 1e-6
    assert abs(float(data.train.y.mean())) < 1e-6 and abs(float(data.train.y.std(unbiased=False)) - 1) < 1e-6


def test_holdout_is_the_last_fifth_of_the_training_rows_standardised_on_the_rest(tiny: Path) -> None:
    """The dropout repository's search: validation = the last 20 % of the split's training rows in file order; the
    network standardises the remaining 80 % on their own statistics."""
    from uqbench.search import Holdout

    data = task(tiny).load_holdout(seed=0, split=1, holdout=Holdout("tail", 0.2))
    order = np.loadtxt(tiny / FOLDER / "index_train_1.txt", dtype=int).tolist()
    keep = int(0.8 * len(order))
    assert original(data.train, data).tolist() == order[:keep]
    assert original(data.test, data).tolist() == order[keep:]
    assert abs(float(data.train.y.mean())) < 1e-6 and abs(float(data.train.y.std(unbiased=False)) - 1) < 1e-6
    torch.testing.assert_close(data.train.x[:, :2].double().mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-6, rtol=0)


def test_seed_does_not_change_a_standard_split(tiny: Path) -> None:
    a, b = task(tiny).load(seed=0, split=1), task(tiny).load(seed=7, split=1)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)


def test_vbll_protocol_draws_a_72_18_10_split_per_seed(tiny: Path) -> None:
    t = task(tiny, protocol="vbll")
    assert t.n_splits() == 1 and t.size() == "36 / 9 / 5"
    data = t.load(seed=3, split=0)
    parts = [original(s, data) for s in (data.train, data.val, data.test)]
    assert [len(p) for p in parts] == [36, 9, 5]
    assert sorted(np.concatenate(parts).tolist()) == list(range(N_ROWS))
    assert data.info == {"protocol": "vbll"} and not any("index_train" in k for k in data.data_sha256)
    again, other = t.load(seed=3, split=0), t.load(seed=4, split=0)
    assert torch.equal(again.val.x, data.val.x) and not torch.equal(other.val.x, data.val.x)


def test_gap_protocol_holds_out_the_middle_third_of_each_feature(tiny: Path) -> None:
    """Foong et al.'s gap splits: split K sorts by feature K; the middle third is the gap (a labelled shifted set
    and an OOD set), a seeded tenth of the rest the test set."""
    t = task(tiny, protocol="gap")
    assert t.n_splits() == 3 and t.size() == "31 / 3, gap 16" and t.shifted_labels() == ("gap",)
    table = np.loadtxt(tiny / FOLDER / "data.txt")
    for k in range(2):
        data = t.load(seed=0, split=k)
        train, test = original(data.train, data), original(data.test, data)
        (gap_set,) = data.shifted
        gap = np.rint((gap_set.y * data.target_scale + data.target_loc).numpy()[:, 0]).astype(int)
        assert sorted([*train, *test, *gap]) == list(range(N_ROWS)) and (len(train), len(test), len(gap)) == (31, 3, 16)
        feature = table[:, k]
        assert feature[train].min() <= feature[gap].min() and feature[gap].max() <= feature[train].max()
        assert not ((feature[train] > feature[gap].min()) & (feature[train] < feature[gap].max())).any()
        assert gap_set.name == "gap" and gap_set.severity is None and torch.equal(gap_set.inputs(), data.ood["gap"])
        assert data.info == {"protocol": "gap", "gap_distinct": N_ROWS} and t.fingerprint(k) == data.data_sha256
    a, b = t.load(seed=0, split=0), t.load(seed=1, split=0)
    gap_rows = [original(Split(d.ood["gap"], d.shifted[0].y), d).tolist() for d in (a, b)]
    assert gap_rows[0] == gap_rows[1] and original(a.test, a).tolist() != original(b.test, b).tolist()  # seed: test rows
    assert task(tiny, protocol="gap").load(seed=0, split=2).info["gap_distinct"] == 1  # the constant column
    assert task(tiny, protocol="gap").load_holdout(0, 0, __import__("uqbench.search").search.Holdout("tail", 0.2)).shifted == ()


def test_gap_protocol_reports_regression_metrics_on_the_gap(tiny: Path, tmp_path: Path) -> None:
    from uqbench.runner import RunOptions, Runner
    from uqbench.spec import resolve

    spec = resolve("map", "uci-yacht", ["protocol=gap", "epochs=3"], split=1, data_dir=tiny)
    record, _ = Runner(RunOptions(out=tmp_path / "out", data_dir=tiny)).run(spec)
    assert record.status == "ok" and record.n["shift"] == 16
    assert {"shift.gap.rmse", "shift.gap.nll", "shift.gap.crps", "shift.gap.coverage90", "shift.rmse", "ood.gap.auroc"} <= set(record.metrics)


@pytest.mark.parametrize(("protocol", "split"), [("vbll", 1), ("standard", N_SPLITS)])
def test_split_out_of_range_is_bad_config(tiny: Path, protocol: str, split: int) -> None:
    with pytest.raises(BadConfig, match=f"split {split}: task 'uci-yacht' with protocol '{protocol}'"):
        task(tiny, protocol=protocol).load(seed=0, split=split)


@pytest.mark.parametrize("bad", ["protocol=gal", "width=0", "activation=gelu", "epochs=0"])
def test_settings_reject_bad_values(bad: str) -> None:
    from uqbench.spec import resolve

    with pytest.raises(BadConfig, match=f"--set {bad}: '{bad.split('=')[0]}' of "):
        resolve("map", "uci-yacht", [bad])


def test_data_dir_refuses_a_file_whose_checksum_differs(tiny: Path) -> None:
    with open(tiny / FOLDER / "index_test_0.txt", "a") as fh:
        fh.write("0\n")
    with pytest.raises(DataError, match=r"index_test_0.txt has sha256 .*refusing a corrupt or different file"):
        task(tiny).load(seed=0, split=0)


def test_data_dir_missing_file_is_one_line_naming_path_and_remedy(tiny: Path) -> None:
    (tiny / FOLDER / "index_train_1.txt").unlink()
    with pytest.raises(DataError) as info:
        task(tiny).load(seed=0, split=1)
    message = str(info.value)
    assert "\n" not in message and str(tiny / FOLDER / "index_train_1.txt") in message and "--data-dir" in message


@pytest.fixture
def server(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Serve the tiny data root over HTTP on localhost; the task's card points at it. Yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tiny)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/{FOLDER}/"
    files = {p.name: file_sha256(p) for p in (tiny / FOLDER).iterdir()}
    monkeypatch.setattr(uci, "load_card", lambda name: tiny_card(files, base))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        yield base
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_into_the_cache_then_reuse_it(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "cache"))
    first = task(None).load(seed=0, split=0)
    assert (tmp_path / "cache" / FOLDER / "index_train_0.txt").is_file()
    served = uci.load_card
    monkeypatch.setattr(uci, "load_card", lambda name: dataclasses.replace(served(name), base_url=UNREACHABLE))
    second = task(None).load(seed=0, split=0)  # nothing can be downloaded now: read from the cache
    assert torch.equal(first.train.x, second.train.x)


def test_download_with_a_wrong_checksum_is_refused(
    server: str, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "cache"))
    (tiny / FOLDER / "data.txt").write_text("1 2 3 4\n")
    with pytest.raises(DataError, match=r"downloading http://127\.0\.0\.1:\d+/tiny/data/data\.txt failed \(ValueError"):
        task(None).load(seed=0, split=0)
    assert not (tmp_path / "cache" / FOLDER / "data.txt").exists()


def test_download_of_a_missing_file_names_the_http_status(
    server: str, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "cache"))
    (tiny / FOLDER / "index_test_1.txt").unlink()
    with pytest.raises(DataError, match=r"index_test_1\.txt is missing and downloading .* failed \(HTTP 404\)"):
        task(None).load(seed=0, split=1)


def test_a_failed_download_leaves_no_empty_folders(
    server: str, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "cache"))
    (tiny / FOLDER / "data.txt").unlink()
    with pytest.raises(DataError, match=r"data\.txt is missing and downloading .* failed \(HTTP 404\)"):
        task(None).load(seed=0, split=0)
    assert not (tmp_path / "cache").exists()


def test_fetch_rejects_a_file_the_card_does_not_list(tiny: Path) -> None:
    with pytest.raises(ValueError, match="not listed"):
        fetch(uci.load_card("uci-yacht"), "n_splits.txt", tiny)


def test_cli_offline_without_data_is_one_line_and_exit_2(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from uqbench.cli import app

    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "empty"))
    result = CliRunner().invoke(app, ["run", "map", "--task", "uci-yacht", "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    missing = tmp_path / "empty" / FOLDER / "data.txt"
    assert len(lines) == 1 and lines[0].startswith(f"error: uci-yacht: {missing} is missing and downloading")
    assert "UQBENCH_DATA" in lines[0] and "--data-dir" in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "empty").exists()  # nothing left behind


def test_data_root_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "env"))
    assert datasets.data_root(tmp_path / "dir") == tmp_path / "dir"
    assert datasets.data_root() == tmp_path / "env"
    monkeypatch.delenv(datasets.ENV_VAR)
    assert datasets.data_root().name == "uqbench"


@pytest.mark.parametrize("name", UCI_TASKS)
def test_card_lists_every_file_and_matches_the_task_defaults(name: str) -> None:
    cls = tasks.get(name)
    card = load_card(name)
    splits = card.facts["shape"]["splits"]
    expected = {"data.txt", "index_features.txt", "index_target.txt"}
    expected |= {f"index_{part}_{k}.txt" for part in ("train", "test") for k in range(splits)}
    assert set(card.files) == expected and all(len(h) == 64 and int(h, 16) >= 0 for h in card.files.values())
    protocol = card.facts["protocol"]
    # the default budget is gal2016's: the repository's n_epochs.txt x 10, as its scripts ran it
    assert (cls.recipe.epochs, cls.recipe.batch_size, cls.backbone.width, cls.backbone.depth) == (
        10 * protocol["epochs"], protocol["batch_size"], protocol["hidden_units"], protocol["hidden_layers"]
    )
    assert cls().n_splits() == splits and card.base_url.endswith(f"/{card.folder}/") and card.citation and card.licence


def test_nine_uci_tasks_ship_their_cards() -> None:
    assert len(UCI_TASKS) == 9 and set(UCI_TASKS) <= set(datasets.card_names())
    with pytest.raises(DataError, match="no dataset card 'uci-nope'"):
        load_card("uci-nope")


@pytest.mark.data
def test_real_files_match_the_cards(shared_uci: Path) -> None:
    for name in UCI_TASKS:
        card = load_card(name)
        for filename in card.files:
            fetch(card, filename, shared_uci)


@pytest.mark.data
@pytest.mark.parametrize("name", UCI_TASKS)
def test_real_split_zero_loads(shared_uci: Path, name: str) -> None:
    t = tasks.get(name)(data_dir=shared_uci)
    data = t.load(seed=0, split=0)
    shape = t.card.facts["shape"]
    assert (len(data.train), len(data.test), data.in_shape) == (shape["train"], shape["test"], (shape["features"],))
    for part in (data.train, data.test):
        assert torch.isfinite(part.x).all() and torch.isfinite(part.y).all() and part.x.abs().max() < 100


@pytest.mark.data
def test_real_naval_constant_columns_become_zero(shared_uci: Path) -> None:
    data = tasks.get("uci-naval")(data_dir=shared_uci).load(seed=0, split=0)
    constant = (data.train.x.std(0) < 1e-6).nonzero().flatten().tolist()
    assert constant == [8, 11] and data.train.x[:, constant].abs().max() < 1e-6


@pytest.mark.data
def test_real_map_run_end_to_end(shared_uci: Path, tmp_path: Path) -> None:
    from uqbench.runner import RunOptions, Runner
    from uqbench.spec import resolve

    spec = resolve("map", "uci-yacht", ["epochs=3"], split=4, data_dir=shared_uci)
    record, fresh = Runner(RunOptions(out=tmp_path, data_dir=shared_uci)).run(spec)
    assert fresh and record.status == "ok" and record.info["protocol"] == "standard"
    assert record.n == {"train": 277, "val": 0, "test": 31} and np.isfinite(record.metrics["rmse"])
    assert record.data_sha256["yacht/data/index_test_4.txt"] == load_card("uci-yacht").files["index_test_4.txt"]
