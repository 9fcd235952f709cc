r"""LaTeX tables for papers: a booktabs `tabular` in a `table` float, with a caption and a note, text escaped.

The output needs `\usepackage{booktabs}` (and `amssymb` for the ✓ of `uqbench reproduce`); nothing here runs
LaTeX. Every cell is text and is escaped (`_ % & # $ { } ~ ^ \`, and the symbols uqbench prints, such as ± ↑ ↓ → ≈ —,
as their macros), except a `Latex` cell, which is LaTeX already (an estimate in math mode, say).
"""

from __future__ import annotations

import re
from typing import Any

from rich.text import Text

_REPLACE = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "→": r"$\rightarrow$", "≈": r"$\approx$",
    "∞": r"$\infty$", "✓": r"$\checkmark$", "✗": r"$\times$", "—": "---", "…": r"\ldots{}",
}
_SPECIAL = re.compile("|".join(map(re.escape, _REPLACE)))
WITHIN_NOISE = r"\textsuperscript{$\approx$}"


class Latex(str):
    """A cell that is LaTeX already: `table` writes it as it is, where it escapes every other cell."""


def escape(text: str) -> str:
    r"""`text` as LaTeX that typesets it: the characters special to LaTeX and uqbench's symbols replaced.

    >>> print(escape("my_method & 50% {a} ± ~x"))
    my\_method \& 50\% \{a\} $\pm$ \textasciitilde{}x
    """
    return _SPECIAL.sub(lambda m: _REPLACE[m.group()], text)


def estimate(text: str, best: bool = False, within_noise: bool = False) -> Latex:
    r"""'0.1234 ± 0.0012' as `$0.1234 \pm 0.0012$`: in `\textbf{}` (with `\boldmath`, so the digits are bold)
    when it is the best of its column, marked `WITHIN_NOISE` when it is within noise of the best.

    >>> print(estimate("0.1234 ± 0.0012", best=True))
    \textbf{\boldmath $0.1234 \pm 0.0012$}
    >>> print(estimate("0.5", within_noise=True))
    $0.5$\textsuperscript{$\approx$}
    """
    math = "$" + text.replace("±", r"\pm") + "$"
    if best:
        return Latex(rf"\textbf{{\boldmath {math}}}")
    return Latex(math + WITHIN_NOISE * within_noise)


def table(columns: list[str], rows: list[list[Any]], caption: str | None = None, note: str | None = None,
          left: int = 1) -> str:
    r"""A `table` float holding a booktabs `tabular`: the caption above (when given), the note in small type
    below (when given; text, or `Latex`). The first `left` columns are left-aligned, the others right-aligned."""
    spec = "l" * left + "r" * (len(columns) - left)
    lines = [r"\begin{table}[ht]", r"\centering"]
    lines += [rf"\caption{{{_cell(caption)}}}"] if caption is not None else []
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", _line(columns), r"\midrule"]
    lines += [_line(row) for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\smallskip{{\footnotesize {_cell(note)}}}"] if note is not None else []
    return "\n".join([*lines, r"\end{table}"]) + "\n"


def _line(cells: list[Any]) -> str:
    return " & ".join(_cell(c) for c in cells) + r" \\"


def _cell(cell: Any) -> str:
    if isinstance(cell, Latex):
        return cell
    return escape(cell.plain if isinstance(cell, Text) else str(cell))


__all__ = ["WITHIN_NOISE", "Latex", "escape", "estimate", "table"]
