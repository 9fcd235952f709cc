"""Metric keys under distribution shift, and their means over shifted sets (Ovadia et al. 2019).

Every shifted test set (`uqbench.tasks.ShiftedSet`) is scored with the task kind's shift metrics, `METRICS`:
accuracy, NLL, Brier and ECE for classification; RMSE, NLL, CRPS and 90 % coverage for regression (original
target units). The keys:

- `shift.<name>.<severity>.<metric>`, or `shift.<name>.<metric>` for a shift without severities: one set;
- `shift.<severity>.<metric>`: the mean over the shifts at that severity;
- `shift.<metric>`: the mean over every shifted set — uncertainty-baselines' cA, cNLL and cCE are
  `shift.accuracy`, `shift.nll` and `shift.ece`.
"""

from __future__ import annotations

from collections import defaultdict

METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "nll", "brier", "ece"),
    "regression": ("rmse", "nll", "crps", "coverage90"),
}
PREFIX = "shift."


def metric_name(key: str) -> str | None:
    """The metric a `shift.` key reports ('shift.fog.3.ece' -> 'ece'), or None for a key that is not one."""
    if not key.startswith(PREFIX):
        return None
    name = key.rsplit(".", 1)[-1]
    return name if any(name in names for names in METRICS.values()) and key.count(".") <= 3 else None


def per_set(key: str) -> bool:
    """Whether a `shift.` key is one set's value ('shift.fog.3.ece', 'shift.gap.rmse'), not a mean over sets."""
    parts = key.split(".")
    return metric_name(key) is not None and len(parts) >= 3 and not parts[1].isdigit()


def keys(kind: str, labels: tuple[str, ...]) -> list[str]:
    """Every key `summarise` gives for a task of `kind` whose shifted sets have these labels
    (`ShiftedSet.label`: `<name>.<severity>` or `<name>`), per set first, then per severity, then overall."""
    if not labels:
        return []
    names = METRICS[kind]
    severities = sorted({label.split(".")[1] for label in labels if "." in label}, key=int)
    return ([f"{PREFIX}{label}.{m}" for label in labels for m in names]
            + [f"{PREFIX}{s}.{m}" for s in severities for m in names] + [f"{PREFIX}{m}" for m in names])


def summarise(per_set: dict[tuple[str, int | None], dict[str, float]]) -> dict[str, float]:
    """Flat `shift.` keys from {(name, severity): {metric: value}}: each set's values, the mean per severity
    (over the sets that have one) and the mean over all sets, in the order of `keys`."""
    out: dict[str, float] = {}
    by_severity: dict[int, list[dict[str, float]]] = defaultdict(list)
    for (name, severity), values in per_set.items():
        label = name if severity is None else f"{name}.{severity}"
        out.update({f"{PREFIX}{label}.{m}": v for m, v in values.items()})
        if severity is not None:
            by_severity[severity].append(values)
    for severity in sorted(by_severity):
        out.update(_means(by_severity[severity], f"{PREFIX}{severity}."))
    out.update(_means(list(per_set.values()), PREFIX))
    return out


def _means(sets: list[dict[str, float]], prefix: str) -> dict[str, float]:
    return {f"{prefix}{m}": sum(s[m] for s in sets) / len(sets) for m in sets[0]} if sets else {}
