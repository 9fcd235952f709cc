"""How `compare` prints a leaderboard: wide or long to fit the width, chosen columns, LaTeX, options refused."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from test_leaderboard import record

from uqbench.errors import BadConfig, UnknownName
from uqbench.leaderboard import build
from uqbench.leaderboard_output import View, print_board

NLL = {"a": [0.30, 0.32, 0.31], "b": [0.50, 0.52, 0.49]}
ACC = {"a": [0.90, 0.91, 0.92], "b": [0.95, 0.96, 0.94]}


def _board(method_b="b", task="two-moons"):
    """Two tasks, two methods (b best on accuracy, a on nll; a within noise of b on accuracy), no training."""
    names = {"a": "a", "b": method_b}
    recs = [record(names[m], task, s, {"nll": NLL[m][s], "accuracy": ACC[m][s]}, n_params=33666)
            for m in names for s in range(3)]
    recs += [record(m, "toy-regression", s, {"rmse": 1.0 + s / 10, "nll": v + s / 10}, n_params=4417)
             for m, v in (("a", 0.7), (method_b, 0.6)) for s in range(2)]
    return build(recs)


def _printed(board, width=80, fmt="table", view=None):
    buf = io.StringIO()
    print_board(Console(file=buf, width=width, soft_wrap=True), board, fmt, view or View())
    return buf.getvalue()


GOLDEN_80 = """\
two-moons (rank by nll)
┏━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┓
┃ method ┃ metric     ┃       mean ± s.e. ┃
┡━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━┩
│ a      │ accuracy ↑ │ 0.9100 ± 0.0058 ≈ │
│        │ nll ↓      │   0.3100 ± 0.0058 │
│        │ runs       │                 3 │
│        │ failed     │                 0 │
│        │ rank       │                 1 │
│        │ avg rank   │              1.50 │
│        │ fit s      │               1.0 │
│        │ predict s  │             0.100 │
│        │ params     │             33.7k │
│ b      │ accuracy ↑ │   0.9500 ± 0.0058 │
│        │ nll ↓      │   0.5033 ± 0.0088 │
│        │ runs       │                 3 │
│        │ failed     │                 0 │
│        │ rank       │                 2 │
│        │ avg rank   │              1.50 │
│        │ fit s      │               1.0 │
│        │ predict s  │             0.100 │
│        │ params     │             33.7k │
└────────┴────────────┴───────────────────┘
toy-regression (rank by nll)
┏━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━┓
┃ method ┃ metric    ┃     mean ± s.e. ┃
┡━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━┩
│ a      │ rmse ↓    │ 1.0500 ± 0.0500 │
│        │ nll ↓     │ 0.7500 ± 0.0500 │
│        │ runs      │               2 │
│        │ failed    │               0 │
│        │ rank      │               2 │
│        │ avg rank  │            1.50 │
│        │ fit s     │             1.0 │
│        │ predict s │           0.100 │
│        │ params    │            4.4k │
│ b      │ rmse ↓    │ 1.0500 ± 0.0500 │
│        │ nll ↓     │ 0.6500 ± 0.0500 │
│        │ runs      │               2 │
│        │ failed    │               0 │
│        │ rank      │               1 │
│        │ avg rank  │            1.50 │
│        │ fit s     │             1.0 │
│        │ predict s │           0.100 │
│        │ params    │            4.4k │
└────────┴───────────┴─────────────────┘
average rank across tasks
┏━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━━━━━━━┳━━━━━━━━━━┓
┃ method ┃ two-moons ┃ toy-regression ┃ avg rank ┃
┡━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━━━━━╇━━━━━━━━━━┩
│ a      │         1 │              2 │     1.50 │
│ b      │         2 │              1 │     1.50 │
└────────┴───────────┴────────────────┴──────────┘
mean ± standard error over runs; ↑/↓: higher/lower is better, → x: closest to x
is best; best per column in bold; ≈: within noise of the best (paired t-test
over the same seeds/splits, 5%); rank: by the metric in the title; avg rank:
mean over tasks; fit/predict: seconds per run
"""


def test_at_80_columns_the_leaderboard_is_long_and_exactly_this():
    assert _printed(_board(), 80) == GOLDEN_80


@pytest.mark.parametrize("width, layout", [(80, "long"), (100, "long"), (200, "wide")])
def test_every_line_fits_the_width_and_no_cell_is_cut(width, layout):
    text = _printed(_board(), width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "…" not in text
    wide_header = re.search(r"┃ method +┃ +accuracy ↑ ┃ +nll ↓ ┃ runs ┃", text)
    assert (wide_header is not None) == (layout == "wide")
    assert ("│        │ nll ↓      │   0.3100 ± 0.0058 │" in text) == (layout == "long")


def test_a_layout_asked_for_is_kept_whatever_the_width():
    assert "┃ metric" not in _printed(_board(), 80, view=View(layout="wide"))  # squeezed, as before this option
    assert "│ a      │ accuracy ↑ │" in _printed(_board(), 200, view=View(layout="long"))
    assert _printed(_board(), 80, "markdown").splitlines()[2].startswith("| method   | accuracy ↑ ")  # markdown: wide


def test_columns_choose_and_order_the_metrics_and_no_cost_drops_the_cost():
    text = _printed(_board(), 200, view=View(metrics=("nll", "acc*"), cost=False))
    header = next(line for line in text.splitlines() if "┃ method" in line)
    assert re.fullmatch(r"┃ method ┃ +nll ↓ ┃ +accuracy ↑ ┃ runs ┃ failed ┃ rank ┃ avg rank ┃", header)
    assert "rmse" not in text and "fit s" not in text and "params" not in text
    csv = _printed(_board(), fmt="csv", view=View(metrics=("nll",), cost=False)).splitlines()
    assert csv[0] == "task,method,config_id,runs,failed,missing,rank,avg_rank,nll,nll_se"


def test_latex_is_booktabs_with_captions_bold_best_and_a_noise_note():
    text = _printed(_board(), fmt="latex")
    assert text.count(r"\begin{table}") == text.count(r"\end{table}") == 3  # two tasks and the ranks
    assert text.count(r"\begin{tabular}") == text.count(r"\end{tabular}") == 3
    assert text.count(r"\toprule") == text.count(r"\midrule") == text.count(r"\bottomrule") == 3
    assert r"\caption{two-moons (rank by nll)}" in text and r"\caption{average rank across tasks}" in text
    assert r"b & \textbf{\boldmath $0.9500 \pm 0.0058$} & $0.5033 \pm 0.0088$ & 3 & 0 & 2 &" in text
    assert r"a & $0.9100 \pm 0.0058$\textsuperscript{$\approx$} & \textbf{\boldmath $0.3100 \pm 0.0058$}" in text
    assert r"\textsuperscript{$\approx$}: within noise of the best" in text  # the note under each task table
    assert r"accuracy $\uparrow$ & nll $\downarrow$" in text
    unescaped = re.sub(r"\\[{}]", "", text)
    assert unescaped.count("{") == unescaped.count("}")
    assert text.count("$") % 2 == 0 and "±" not in text and "≈" not in text


def test_latex_escapes_every_name():
    text = _printed(_board(method_b="my_method 50% & co", task="task_#1"), fmt="latex")
    assert r"\caption{task\_\#1 (rank by nll)}" in text
    assert r"my\_method 50\% \& co & \textbf{" in text
    tabulars = re.findall(r"\\begin\{tabular\}\{(\w+)\}\n(.*?)\\end\{tabular\}", text, re.DOTALL)
    assert len(tabulars) == 3
    for spec, body in tabulars:
        rows = [line for line in body.splitlines() if line.endswith(r"\\")]
        assert [line.replace(r"\&", "").count("&") for line in rows] == [len(spec) - 1] * len(rows)  # no stray cell


def test_long_layout_in_latex_and_markdown():
    text = _printed(_board(), fmt="latex", view=View(layout="long"))
    assert r"\begin{tabular}{llr}" in text and r"method & metric & mean $\pm$ s.e. \\" in text
    assert r" & nll $\downarrow$ & \textbf{\boldmath $0.3100 \pm 0.0058$} \\" in text
    markdown = _printed(_board(), fmt="markdown", view=View(layout="long"))
    assert "|          | nll ↓      | **0.3100 ± 0.0058** |" in markdown.splitlines()


@pytest.mark.parametrize(
    "fmt, columns, no_cost, layout, message",
    [
        ("table", None, False, "tall", "--layout 'tall': expected one of auto, wide, long"),
        ("table", ", ,", False, "auto", "--columns ', ,': expected comma-separated metric keys or patterns"),
        ("json", "nll", False, "auto", "--columns: not for --format json"),
        ("json", None, True, "auto", "--no-cost: not for --format json"),
        ("csv", None, False, "long", "--layout long: only for --format table, markdown or latex; csv has one shape"),
    ],
)
def test_options_that_cannot_apply_are_refused(fmt, columns, no_cost, layout, message):
    with pytest.raises(BadConfig, match="^" + re.escape(message)):
        View.parse(fmt, columns, no_cost, layout)


def test_a_column_the_board_lacks_is_refused_naming_those_it_has():
    view = View.parse("table", "nll, zz*", False, "auto")
    assert view.metrics == ("nll", "zz*")
    with pytest.raises(UnknownName, match=re.escape("--columns 'zz*': no run of this comparison reports it; "
                                                    "available: accuracy, rmse, nll")):
        view.check(_board())
