"""Protocols and `uqbench reproduce`: the files parse and validate, the comparison arithmetic (sd -> se, rounding,
combined s.e., verdicts) on hand-made tables, exit codes end to end."""

from __future__ import annotations

import json
import math

import pytest

from uqbench import protocols
from uqbench.protocols import Printed, Reference
from uqbench.reproduce import Estimate, compare, difference, published, verdict
from uqbench.results import RunKey, RunRecord

TINY = """
[protocol]
name = "tiny"
version = 1
title = "MAP on toy regression"
citation = "nobody (2026)"

[plan]
methods = ["map"]
tasks = ["toy-regression"]
seeds = 2

[set]
epochs = 2
n_train = 64
n_test = 32

[reference]
source = "made up for the test"
spread = "{spread}"
method = "map"
also = ["crps"]
[reference.toy-regression]
splits = {splits}
rmse = "{rmse}"
nll = "{nll}"
"""


def test_printed_numbers_keep_their_digits():
    p = Printed.parse("-0.95 ± 0.01")
    assert (p.mean, p.spread, p.decimals) == (-0.95, 0.01, (2, 2)) and str(p) == "-0.95 ± 0.01"
    assert Printed.parse("4.36+-0.1").decimals == (2, 1)
    for bad in ("4.36", "± 0.1", "abc ± 1"):
        with pytest.raises(ValueError):
            Printed.parse(bad)


def test_a_standard_deviation_becomes_a_standard_error_and_rounding_is_allowed_for():
    est, half = published(Printed.parse("3.28 ± 1.00"), "sd", 20)
    assert est.mean == 3.28 and est.se == pytest.approx(1.005 / math.sqrt(20)) and half == 0.005
    est, half = published(Printed.parse("0.10 ± 0.00"), "se", 20)
    assert est.se == pytest.approx(0.005) and half == pytest.approx(0.005)  # "± 0.00" means below 0.005
    # inside the rounding interval of the printed mean: no difference at all
    assert difference(Estimate(0.1049, 0.0001, 20), Estimate(0.10, 0.0, 20), 0.005) == 0.0
    # beyond it, the distance to the interval's end, in combined standard errors
    assert difference(Estimate(0.12, 0.003, 20), Estimate(0.10, 0.004, 20), 0.005) == pytest.approx(3.0)
    assert difference(Estimate(0.08, 0.003, 20), Estimate(0.10, 0.004, 20), 0.005) == pytest.approx(-3.0)
    assert difference(Estimate(1.0, 0.0, 1), Estimate(2.0, 0.0, 1)) == -math.inf


def _records(values: dict[str, list[float]], method: str = "map") -> list[RunRecord]:
    n = len(next(iter(values.values())))
    return [RunRecord(RunKey(method, {}, "t", {}, 0, s), "ok", metrics={k: v[s] for k, v in values.items()})
            for s in range(n)]


def test_compare_marks_each_cell_and_the_verdict_needs_every_one():
    reference = Reference("made up", "se", "map", also=("crps",),
                          values={"t": {"rmse": Printed.parse("1.00 ± 0.05"), "nll": Printed.parse("2.0 ± 0.1")}},
                          splits={"t": 4})
    records = _records({"rmse": [1.0, 1.1, 0.9, 1.0], "nll": [3.0, 3.1, 2.9, 3.0], "crps": [0.5] * 4})
    cells = {c.metric: c for c in compare(reference, records, ["t"])}
    assert cells["rmse"].within is True and cells["nll"].within is False and cells["crps"].within is None
    assert cells["nll"].z == pytest.approx((1.0 - 0.05) / math.hypot(0.0408248, 0.15), rel=1e-4)
    assert not verdict(list(cells.values()))
    assert verdict([cells["rmse"], cells["crps"]])
    missing = compare(reference, [], ["t"])
    assert missing[0].ours is None and not verdict(missing)  # nothing run is not a pass


def test_a_reference_runner_is_compared_like_a_table():
    reference = Reference("the package", "se", "vbll", runner="vbll-package")
    ours = _records({"rmse": [1.0, 1.2], "nll": [2.0, 2.2]}, "vbll")
    theirs = _records({"rmse": [1.1, 1.3], "nll": [5.0, 5.2]}, "vbll-package")
    cells = {c.metric: c for c in compare(reference, ours + theirs, ["t"])}
    assert cells["rmse"].within and not cells["nll"].within and cells["rmse"].rounding == 0.0


def test_shipped_protocols_parse_and_carry_their_sources():
    assert set(protocols.names()) >= {"gal2016", "gal2018-grid", "lakshminarayanan2017", "harrison2024"}
    for name in protocols.names():
        p = protocols.load(name)
        assert p.name == name and p.version >= 1 and p.citation and p.reference.source
    gal = protocols.load("gal2016")
    assert gal.reference.spread == "se" and gal.reference.values["uci-kin8nm"]["nll"].mean == -0.95
    assert protocols.load("lakshminarayanan2017").reference.spread == "sd"
    assert protocols.load("harrison2024").reference.runner == "vbll-package"
    assert protocols.load("gal2018-grid").experiment.search is not None


@pytest.mark.parametrize("protocol", ["gal2016", "gal2018-grid", "lakshminarayanan2017", "harrison2024"])
def test_shipped_protocols_resolve_every_run(cli, protocol, shared_uci):
    result = cli("reproduce", protocol, "--no-run", "--data-dir", shared_uci, "--format", "json")
    assert result.exit_code == 1, result.output  # nothing is in an empty store: not a pass, but not bad input
    assert json.loads(result.stdout)["within"] is False


TWO_SPLITS = [("gal2016", "--splits", 0), ("lakshminarayanan2017", "--splits", None), ("harrison2024", "--seeds", None),
              pytest.param("gal2018-grid", "--splits", None, marks=pytest.mark.slow)]


@pytest.mark.data
@pytest.mark.parametrize("protocol, subset, exit_code", TWO_SPLITS)
def test_two_splits_of_each_protocol_run_on_the_real_data(cli, tmp_path, shared_uci, protocol, subset, exit_code):
    """Yacht, the smallest set, on two splits (seeds for harrison2024) with the protocol's full recipe. gal2016 must
    agree with the published table there; the others report their verdict either way (see the README)."""
    result = cli("reproduce", protocol, "--datasets", "yacht", subset, "2", "--data-dir", shared_uci, "--out", tmp_path,
                 "--format", "json", "-q")
    assert result.exit_code in ((0, 1) if exit_code is None else (exit_code,)), result.output
    report = json.loads(result.stdout)
    compared = [c for c in report["cells"] if c["published"] is not None]
    assert {c["metric"] for c in compared} >= {"rmse"} and all(c["ours"]["n"] == 2 for c in compared)
    assert report["subset"]
    if protocol == "gal2018-grid":
        records = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
        assert all(len(r["info"]["search"]["candidates"]) == 12 for r in records)


BAD = [
    ("[protocol]\nname='x'\nversion=1\ntitle='t'\ncitation='c'\n[plan]\nmethods=['map']\ntasks=['two-moons']\n",
     "reference: a protocol needs a [reference] table"),
    (TINY.format(spread="var", splits=2, rmse="1 ± 1", nll="1 ± 1"), "reference.spread: expected 'se' or 'sd'; got 'var'"),
    (TINY.format(spread="se", splits=0, rmse="1 ± 1", nll="1 ± 1"), "reference.toy-regression.splits: expected a positive integer"),
    (TINY.format(spread="se", splits=2, rmse="1.0", nll="1 ± 1"), "reference.toy-regression.rmse: expected 'MEAN ± SPREAD'"),
    (TINY.format(spread="se", splits=2, rmse="1 ± 1", nll="1 ± 1").replace('method = "map"', 'method = "vbll"'),
     "reference.method: 'vbll' is not one of the plan's methods (map)"),
    (TINY.format(spread="se", splits=2, rmse="1 ± 1", nll="1 ± 1").replace("nll =", "nlll ="),
     "reference.toy-regression.nlll: unknown metric 'nlll'"),
    (TINY.format(spread="se", splits=2, rmse="1 ± 1", nll="1 ± 1").replace("rmse =", "accuracy ="),
     "reference.toy-regression.accuracy: task 'toy-regression' (regression) does not report 'accuracy'; it reports: "
     "rmse, mae, nll"),
    (TINY.format(spread="se", splits=2, rmse="1 ± 1", nll="1 ± 1").replace("rmse =", "'ood.moon.auroc' ="),
     "reference.toy-regression.ood.moon.auroc: task 'toy-regression' (regression) does not report 'ood.moon.auroc'"),
    (TINY.format(spread="sd", splits=5000, rmse="1 ± 1", nll="1 ± 1"),
     "reference.toy-regression.splits: 5000 repetitions, but the protocol has 2 for task 'toy-regression' "
     "(1 splits x 2 seeds)"),
    (TINY.format(spread="se", splits=2, rmse="1 ± 1", nll="1 ± 1").replace("version = 1", "version = 'one'"),
     "protocol.version: expected a positive integer; got 'one'"),
    (TINY.format(spread="se", splits=2, rmse="1 ± 1", nll="1 ± 1").replace("[set]\nepochs = 2", "[set]\nepochs = -2"),
     "set.epochs: 'epochs' of the training recipe must be at least 1; got -2"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_a_bad_protocol_file_is_one_line_naming_the_file_the_key_and_the_reason(cli, tmp_path, text, message):
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    result = cli("reproduce", path, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {path}") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def test_reproduce_runs_what_is_missing_and_exits_by_the_verdict(cli, tmp_path):
    """A user's own protocol file: the runs go into the store, the table compares them; exit 0 within, 1 beyond."""
    path, out = tmp_path / "tiny.toml", tmp_path / "out"
    path.write_text(TINY.format(spread="se", splits=2, rmse="0.00 ± 0.01", nll="0.0 ± 0.1"))
    far = cli("reproduce", path, "--out", out, "--format", "json", "-q")
    assert far.exit_code == 1, far.output
    report = json.loads(far.stdout)
    cells = {c["metric"]: c for c in report["cells"]}
    assert report["protocol"] == "tiny" and not report["within"] and cells["crps"]["published"] is None
    ours = cells["rmse"]["ours"]
    near = f'{ours["mean"]:.2f} ± {ours["se"]:.2f}'
    nll = cells["nll"]["ours"]
    path.write_text(TINY.format(spread="se", splits=2, rmse=near, nll=f'{nll["mean"]:.2f} ± {nll["se"]:.2f}'))
    again = cli("reproduce", path, "--out", out, "--format", "markdown")
    assert again.exit_code == 0, again.output
    assert "0 of 2 planned runs" not in again.stderr and "2 of 2 planned runs are in" in again.stderr
    assert "| toy-regression | rmse" in again.stdout and "✓" in again.stdout
    assert f"| {near} " in again.stdout  # the published column shows the number as the paper printed it
    assert "tiny (v1): 2 of 2 cells within 2 combined s.e." in again.stdout
    subset = cli("reproduce", path, "--out", out, "--datasets", "toy-regression", "--no-run")
    assert subset.exit_code == 0
    sorted(out.glob("*.json"))[0].unlink()  # a seed's record gone: the cells are short of a run, not within
    short = cli("reproduce", path, "--out", out, "--no-run", "--format", "json")
    assert short.exit_code == 1, short.output
    cells = {c["metric"]: c for c in json.loads(short.stdout)["cells"]}
    assert cells["rmse"]["missing"] == cells["nll"]["missing"] == 1 and cells["rmse"]["within"] is False
    assert "✗ (1 run missing)" in cli("reproduce", path, "--out", out, "--no-run", "--format", "markdown").stdout
    bad = cli("reproduce", path, "--out", out, "--datasets", "yacht")
    assert bad.exit_code == 2 and "--datasets 'yacht': protocol 'tiny' has no such dataset" in bad.stderr


def test_list_protocols_and_run_config_take_a_protocol_file(cli):
    listed = cli("list", "protocols", "--format", "json")
    rows = {r["protocol"]: r for r in json.loads(listed.stdout)}
    assert set(rows) >= {"gal2016", "gal2018-grid", "lakshminarayanan2017", "harrison2024"}
    assert rows["gal2018-grid"]["search"] == "yes" and rows["harrison2024"]["reference"] == "vbll-package"
    path = protocols.load("gal2016").path
    (key,) = [r["key"] for r in json.loads(cli("run", "mc-dropout", "--task", "uci-yacht", "--config", path,
                                               "--dry-run", "--json").stdout)]
    assert key["recipe"]["batch_size"] == 32 and key["recipe"]["epochs"] == 400 and key["recipe"]["optimizer"] == "adam"
    assert key["method_config"] == {"p": 0.01, "samples": 10000, "input_dropout": True, "tau": 0.541869562034,
                                    "length_scale": 0.1, "predictive": "mixture"}
