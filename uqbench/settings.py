"""Settings: `[SCOPE.][PART.]KEY=VALUE` assignments, where they come from and which part of a run they set.

A run has four configurable parts: the method's config (`method`), the task's data settings (`task`), the training
recipe (`recipe`, a `TrainConfig`) and the backbone (`backbone`, a `BackboneConfig`). A setting is
`[SCOPE.][PART.]KEY=VALUE`: SCOPE is a method name and/or a task name (only runs of that method / on that task),
PART one of the four (needed only when KEY is in two of them). Settings come from five layers, applied in this
order (a later one wins): class and task defaults, a suite's or protocol's settings, a config file, `--set`, flag
sugar (`--epochs`); within a layer a setting scoped to a method or a task beats an unscoped one, and one scoped to
both beats either. `uqbench.spec.plan` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from uqbench import config as cfgmod
from uqbench.errors import BadConfig, UnknownName

PARTS = ("method", "task", "recipe", "backbone")
DEFAULTS, SUITE, CONFIG_FILE, SET, FLAG = range(5)  # layers, lowest precedence first


@dataclass(frozen=True)
class Setting:
    """One assignment KEY=VALUE for the runs in its scope.

    Attributes:
        key: the config field.
        value: command-line text (`text=True`, coerced to the field's type) or a typed value (a config file's).
        part: 'method', 'task', 'recipe', 'backbone', or None for whichever part has the key.
        method, task: the scope: only runs of this method / on this task (None: any).
        layer: DEFAULTS .. FLAG (see the module docstring).
        source: where it came from, for messages: "--set lr=0.1", "exp.toml: set.uci-yacht.epochs".
        text: whether `value` is text.
    """

    key: str
    value: Any
    part: str | None = None
    method: str | None = None
    task: str | None = None
    layer: int = SET
    source: str = ""
    text: bool = True

    @property
    def specificity(self) -> int:
        return (self.method is not None) + (self.task is not None)

    def applies(self, method: str, task: str) -> bool:
        return self.method in (None, method) and self.task in (None, task)


def parse_setting(text: str, layer: int = SET, source: str | None = None) -> Setting:
    """A setting from its text form `[SCOPE.][PART.]KEY=VALUE` (as `--set` takes it)."""
    where = source or f"--set {text}"
    path, sep, value = text.partition("=")
    if not sep or not path.strip():
        raise BadConfig(f"{where}: expected key=value")
    return setting_at(path.strip().split("."), value.strip(), layer, where, text=True)


def setting_at(path: list[str], value: Any, layer: int, source: str, text: bool) -> Setting:
    """A setting from a dotted path (scope names, part, key) and a value."""
    from uqbench.methods import methods
    from uqbench.tasks import tasks

    *prefix, key = [p.strip() for p in path]
    scope: dict[str, str | None] = {"part": None, "method": None, "task": None}
    for name in prefix:
        meanings = [what for what, names in (("part", PARTS), ("method", methods), ("task", tasks)) if name in names]
        if len(meanings) > 1:  # a plugin may name a method like a task or a part: never guess which is meant
            raise BadConfig(f"{source}: {name!r} is the name of a {' and of a '.join(meanings)}, so this setting is "
                            "ambiguous; rename or uninstall the plugin that reuses the name")
        slot = meanings[0] if meanings else None
        if slot is None:
            raise UnknownName(
                f"{source}: {name!r} is neither a part ({', '.join(PARTS)}) nor a method or task name; "
                f"methods: {', '.join(methods.names())}; tasks: {', '.join(tasks.names())}"
            )
        if scope[slot] is not None:
            raise BadConfig(f"{source}: two {slot} names ({scope[slot]!r}, {name!r}) in one setting")
        scope[slot] = name
    if not key:
        raise BadConfig(f"{source}: expected key=value")
    return Setting(key, value, scope["part"], scope["method"], scope["task"], layer, source, text)


def owners(method: str, task: str) -> dict[str, str]:
    """How messages name each part of a run: "method 'vbll'", "task 'uci-boston'", "the training recipe", ..."""
    return {"method": f"method {method!r}", "task": f"task {task!r}", "recipe": "the training recipe",
            "backbone": "the backbone"}


def applicable(settings: tuple[Setting, ...], method: str, task: str,
               types: dict[str, dict[str, Any]]) -> Iterator[tuple[int, Setting, str]]:
    """(index, setting, part) of every setting this pair takes, lowest precedence first (see the module doc)."""
    order = sorted(range(len(settings)), key=lambda i: (settings[i].layer, settings[i].specificity, i))
    for i in order:
        s = settings[i]
        if s.applies(method, task):
            part = part_of(s, types)
            if part is not None:
                yield i, s, part


def part_of(s: Setting, types: dict[str, dict[str, Any]]) -> str | None:
    """The part a setting sets for this pair, or None when none of the pair's parts has the key."""
    if s.part is not None:
        return s.part if s.key in types[s.part] else None
    having = [part for part in PARTS if s.key in types[part]]
    if len(having) > 1:
        raise BadConfig(f"{s.source}: {s.key!r} is a key of {' and '.join(having)}; "
                        f"write {' or '.join(f'{p}.{s.key}' for p in having)}")
    return having[0] if having else None


def typed(s: Setting, tp: Any, owner: str) -> Any:
    """The setting's value as config type `tp` (text coerced, a file's value checked); BadConfig naming it."""
    try:
        return cfgmod.coerce(tp, s.value) if s.text else cfgmod.convert(tp, s.value)
    except cfgmod.Underflow:
        raise BadConfig(f"{s.source}: {s.key!r} of {owner}: {s.value} is nonzero but below the smallest float "
                        "(it would be 0)") from None
    except ValueError:
        raise BadConfig(f"{s.source}: {s.key!r} of {owner} must be {cfgmod.describe_type(tp)}; got {s.value!r}") from None


__all__ = [
    "CONFIG_FILE", "DEFAULTS", "FLAG", "PARTS", "SET", "SUITE", "Setting", "applicable", "owners", "parse_setting",
    "part_of", "setting_at", "typed",
]
