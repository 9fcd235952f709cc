"""One definition of a run: `RunSpec`, the settings that make it, and the one resolver every command uses.

A run is a method with its config, a task with its data config, a training recipe (`TrainConfig`: budget,
optimiser, numeric precision), a backbone (`BackboneConfig`), a seed and a split, plus two things no setting
chooses: the data fingerprint (`Task.fingerprint`) and the code that runs it (uqbench's version, the method's
and the task's distribution). All of it is the run's key; the record id is its hash, so no setting, data file or
code version can change without changing the id.

`plan(Request)` resolves every run of a request from its settings (`uqbench.settings`), applied in one order
(a later source wins):

1. class defaults (each config's field defaults), then the task's defaults (`Task.recipe`, `Task.backbone`);
2. a suite's or protocol's settings;
3. a config file (`--config exp.toml`, its `[set]` table);
4. `--set` assignments;
5. flag sugar (`--epochs N`).

Within a layer, a setting scoped to a method or a task beats an unscoped one, and one scoped to both beats
either. A setting that applies to no planned run is an error, never ignored (one scoped to a method or task
outside the plan is checked for typos instead). `run`, `compare`, `reproduce`, the Python API, the executors (they
receive `RunSpec`s), the plots (`RunSpec.from_key`) and the artifact keys (`RunSpec.shared_key`) all go through it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from uqbench import config as cfgmod
from uqbench.errors import BadConfig, UnknownName
from uqbench.models import BackboneConfig
from uqbench.results import RunKey
from uqbench.search import Holdout, Search
from uqbench.settings import PARTS, Setting, applicable, owners, parse_setting, typed
from uqbench.training import TrainConfig


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one run's result (see the module docstring); `key()` is its identity.

    Attributes:
        method, task: registry names.
        method_config, task_config, recipe, backbone: resolved config instances.
        seed, split: which repetition.
        data: the task's fingerprint of the split's data.
        code: versions of the code that runs it: {'uqbench', 'method', 'task'} ('builtin' or 'dist==version').
    """

    method: str
    method_config: Any
    task: str
    task_config: Any
    recipe: TrainConfig
    backbone: BackboneConfig
    seed: int
    split: int
    data: dict[str, str] = field(default_factory=dict)
    code: dict[str, str] = field(default_factory=dict)
    search: Search | None = None

    def key(self) -> RunKey:
        return RunKey(
            method=self.method,
            method_config=cfgmod.to_dict(self.method_config),
            task=self.task,
            task_config=cfgmod.to_dict(self.task_config),
            recipe=cfgmod.to_dict(self.recipe),
            backbone=cfgmod.to_dict(self.backbone),
            seed=self.seed,
            split=self.split,
            data=dict(self.data),
            code=dict(self.code),
            search=None if self.search is None else self.search.to_dict(),
        )

    @property
    def id(self) -> str:
        return self.key().id

    def shared_key(self) -> dict[str, Any]:
        """The key minus the method and what only changes the evaluation (`Task.evaluated_only`, shifted sets'
        data): what a network shared between methods (the cached MAP network) depends on."""
        from uqbench.tasks import tasks
        from uqbench.tasks.base import SHIFT_DATA

        key = dataclasses.asdict(self.key())
        del key["method"], key["method_config"], key["search"]
        evaluated_only = tasks.get(self.task).evaluated_only
        key["task_config"] = {k: v for k, v in key["task_config"].items() if k not in evaluated_only}
        key["data"] = {k: v for k, v in key["data"].items() if k != SHIFT_DATA and not k.startswith(f"{SHIFT_DATA}/")}
        key["code"] = {k: v for k, v in self.code.items() if k in ("uqbench", "backbone")}  # a custom backbone's code
        return key

    def with_values(self, values: dict[tuple[str, str], Any]) -> RunSpec:
        """This spec with {(part, key): value} set (typed values; each part validated again)."""
        configs = {"method": self.method_config, "task": self.task_config, "recipe": self.recipe,
                   "backbone": self.backbone}
        for part in {p for p, _ in values}:
            config = configs[part]
            fields = {**cfgmod.to_dict(config), **{k: v for (p, k), v in values.items() if p == part}}
            configs[part] = cfgmod.build(type(config), fields, owners(self.method, self.task)[part])
        return dataclasses.replace(self, method_config=configs["method"], task_config=configs["task"],
                                   recipe=configs["recipe"], backbone=configs["backbone"])

    def make_method(self):
        from uqbench.methods import methods

        return methods.get(self.method)(self.method_config)

    def make_task(self, data_dir: Path | None = None):
        from uqbench.tasks import tasks

        return tasks.get(self.task)(self.task_config, data_dir=data_dir)

    @classmethod
    def from_key(cls, key: RunKey) -> RunSpec:
        """Rebuild a spec from a stored key (e.g. to re-load a run's data); the configs are validated again."""
        from uqbench.methods import methods
        from uqbench.tasks import tasks

        method_cls, task_cls = methods.get(key.method), tasks.get(key.task)
        return cls(
            method=key.method,
            method_config=cfgmod.build(method_cls.Config, key.method_config, f"method {key.method!r}"),
            task=key.task,
            task_config=cfgmod.build(task_cls.Config, key.task_config, f"task {key.task!r}"),
            recipe=cfgmod.build(TrainConfig, key.recipe, "the training recipe"),
            backbone=cfgmod.build(BackboneConfig, key.backbone, "the backbone"),
            seed=key.seed,
            split=key.split,
            data=dict(key.data),
            code=dict(key.code),
            search=None if key.search is None else Search.from_dict(key.search),
        )


@dataclass(frozen=True)
class SearchRequest:
    """What a `[search]` table asks for (see `uqbench.search`); its grid axes are settings whose value is the
    tuple of values to try, scoped like any setting."""

    metric: str
    holdout: Holdout
    grid: tuple[Setting, ...]
    source: str = ""


@dataclass(frozen=True)
class Request:
    """What to run: methods x tasks x seeds x splits with settings (what `run`, `compare` and the API build).

    Attributes:
        methods: method names, 'all' (every registered method) or a shell pattern ('*'), minus `exclude`.
        tasks: task names.
        seeds: seeds 0 .. seeds-1 for every split.
        splits: the first N splits of every task (capped at its number of splits); None: all of them.
        split: one given split instead (`run --split K`); must exist.
        settings: every setting, any layer, in the order given.
        data_dir: where tasks read their files.
        strict: an unsupported (method, task) pair is an error (`run`) instead of a skipped pair (`compare`).
        search: a per-run grid search for the runs whose parts have its axes (see `uqbench.search`).
    """

    methods: tuple[str, ...] | str
    tasks: tuple[str, ...]
    seeds: int = 1
    splits: int | None = 1
    split: int | None = None
    exclude: tuple[str, ...] = ()
    settings: tuple[Setting, ...] = ()
    data_dir: Path | None = None
    strict: bool = False
    search: SearchRequest | None = None


@dataclass
class Plan:
    """Every run of a request, in leaderboard order (task, method, split, seed), and the pairs left out."""

    specs: list[RunSpec]
    skipped: list[str] = field(default_factory=list)  # "sngp on toy-regression: ..." for unsupported pairs
    tasks: dict[str, Any] = field(default_factory=dict)  # task name -> Task instance (for `prepare`)
    splits: dict[str, list[int]] = field(default_factory=dict)  # task name -> planned splits
    search_source: str = ""  # the file of the request's [search] table, for messages

    def expected(self) -> dict[tuple[str, str], int]:
        """(task, method) -> number of planned runs."""
        counts: dict[tuple[str, str], int] = {}
        for spec in self.specs:
            counts[spec.task, spec.method] = counts.get((spec.task, spec.method), 0) + 1
        return counts

    def prepare(self) -> None:
        """Make every planned split's files available before any run starts (DataError otherwise), and check that
        every search's validation part leaves rows on both sides of each split it cuts (BadConfig otherwise)."""
        for name, task in self.tasks.items():
            task.prepare(self.splits[name])
        cut: set[tuple[str, int, int, Holdout]] = set()
        for spec in self.specs:
            if spec.search is None or (spec.task, spec.seed, spec.split, spec.search.holdout) in cut:
                continue
            cut.add((spec.task, spec.seed, spec.split, spec.search.holdout))
            try:
                self.tasks[spec.task].load_holdout(spec.seed, spec.split, spec.search.holdout)
            except BadConfig as exc:
                raise BadConfig(f"{self.search_source}: search.fraction: {exc} (task {spec.task!r}, split "
                                f"{spec.split}, seed {spec.seed})") from None


def method_names(selection: tuple[str, ...] | str, exclude: Iterable[str] = (),
                 skipped: list[str] | None = None) -> list[str]:
    """The methods a selection names, in order: each entry a name, 'all' (every registered method, plugins
    included, but not the reference runners) or a shell pattern such as 'mc-*'; minus `exclude` (names or
    patterns). A plugin that fails to load is left out of 'all' and of patterns, with its error appended to
    `skipped` (named explicitly, it is an error)."""
    from uqbench.errors import PluginError
    from uqbench.methods import methods

    exclude = tuple(exclude)

    def usable(name: str) -> bool:
        try:
            return not _reference(name)
        except PluginError as exc:
            if skipped is not None and str(exc) not in skipped:
                skipped.append(str(exc))
            return False

    def expand(entries: Iterable[str]) -> list[str]:
        out: list[str] = []
        for entry in entries:
            if entry == "all" or any(c in entry for c in "*?["):
                found = [n for n in methods.names("*" if entry == "all" else entry) if usable(n)]
                if not found:
                    raise UnknownName(f"no method matches {entry!r}; available: {', '.join(methods.names())}")
                out += found
            else:
                methods.get(entry)
                out.append(entry)
        return list(dict.fromkeys(out))

    dropped = set(expand(exclude))
    kept = [n for n in expand([selection] if isinstance(selection, str) else selection) if n not in dropped]
    if not kept:
        raise BadConfig(f"--exclude {', '.join(exclude)}: leaves no method to run")
    return kept


def _reference(name: str) -> bool:
    """A built-in reference runner (e.g. `vbll-package`), which only an explicit name plans."""
    from uqbench.methods import methods

    return methods.origin(name) == "builtin" and getattr(methods.get(name), "reference", False)


MAX_SEEDS = 10_000  # more is a typo (a plan of 10**30 runs would never finish being built)


def plan(request: Request) -> Plan:
    """Resolve a request into run specs; raises UnknownName / BadConfig / Unsupported / DataError (exit 2)."""
    from uqbench.tasks import tasks

    if not 1 <= request.seeds <= MAX_SEEDS:
        raise BadConfig(f"--seeds {request.seeds}: must be at least 1" + (f" and at most {MAX_SEEDS}" if request.seeds > 1 else ""))
    if request.splits is not None and request.splits < 1:
        raise BadConfig(f"--splits {request.splits}: must be at least 1")
    out = Plan([], search_source=request.search.source if request.search is not None else "")
    names = method_names(request.methods, request.exclude, out.skipped)
    for name in request.tasks:
        tasks.get(name)
    used: set[int] = set()  # indices of the settings, then of the grid axes (offset by len(settings))
    fingerprints: dict[tuple[str, int], dict[str, str]] = {}
    for task_name in request.tasks:
        for method_name in names:
            pair = _resolve_pair(method_name, task_name, request, used)
            if isinstance(pair, str):
                out.skipped.append(pair)
                continue
            task = pair["task"]
            out.tasks.setdefault(task_name, task)
            for split in out.splits.setdefault(task_name, _splits(task, task_name, request)):
                if (task_name, split) not in fingerprints:
                    fingerprints[task_name, split] = task.fingerprint(split)
                data = fingerprints[task_name, split]
                out.specs += [dataclasses.replace(pair["spec"], seed=seed, split=split, data=data)
                              for seed in range(request.seeds)]
    axes = request.search.grid if request.search is not None else ()
    for i, s in enumerate((*request.settings, *axes)):
        if i not in used:
            _check_unused(s, names, request.tasks)
    return out


def resolve(method: str, task: str, settings: Iterable[str] = (), *, seed: int = 0, split: int = 0,
            data_dir: Path | None = None) -> RunSpec:
    """The spec of one run from names and `--set`-style settings: `plan` on a one-run request, as `uqbench run`
    builds it (an unsupported pair raises Unsupported)."""
    request = Request((method,), (task,), seeds=seed + 1, split=split,
                      settings=tuple(parse_setting(text) for text in settings), data_dir=data_dir, strict=True)
    return plan(request).specs[-1]


def _check_unused(s: Setting, methods_planned: list[str], tasks_planned: tuple[str, ...]) -> None:
    """A setting no planned run took: fine when it is scoped to a method or task outside the plan and names a
    key that scope has (a protocol's settings for a dataset not asked for); otherwise a typo, and an error."""
    from uqbench.methods import methods
    from uqbench.tasks import tasks

    outside = (s.method is not None and s.method not in methods_planned) or (
        s.task is not None and s.task not in tasks_planned)
    if outside:
        parts = {
            "method": [(f"method {m!r}", methods.get(m).Config) for m in ([s.method] if s.method else methods_planned)],
            "task": [(f"task {t!r}", tasks.get(t).Config) for t in ([s.task] if s.task else tasks_planned)],
            "recipe": [("the training recipe", TrainConfig)],
            "backbone": [("the backbone", BackboneConfig)],
        }
        having = [(owner, c) for part, cs in parts.items() if s.part in (None, part) for owner, c in cs
                  if s.key in cfgmod.field_types(c)]
        for owner, config_cls in having:  # not run now, but a bad value is still a mistake to report
            _check_value(s, config_cls, owner)
        if having:
            return
    scope = [f"method {s.method!r}"] * (s.method is not None) + [f"task {s.task!r}"] * (s.task is not None)
    keys = ""
    if len(methods_planned) == 1 and len(tasks_planned) == 1:  # one run: say what it takes
        method, task = methods_planned[0], tasks_planned[0]
        taken = [(f"method {method!r}", methods.get(method).Config), (f"task {task!r}", tasks.get(task).Config),
                 ("recipe", TrainConfig), ("backbone", BackboneConfig)]
        keys = "; " + "; ".join(f"{owner} takes: {', '.join(cfgmod.field_types(c)) or 'nothing'}" for owner, c in taken)
    raise BadConfig(
        f"{s.source}: no planned run has a key {s.key!r}"
        + (f" in its {s.part}" if s.part else "")
        + (f" among the runs of {' on '.join(scope)}" if scope else "")
        + f" (methods: {', '.join(methods_planned)}; tasks: {', '.join(tasks_planned)}){keys}"
    )


def _check_value(s: Setting, config_cls: type, owner: str) -> None:
    """BadConfig naming the setting when its value is not of the field's type or breaks the field's bounds."""
    value = typed(s, cfgmod.field_types(config_cls)[s.key], owner)
    try:
        cfgmod.check_field(config_cls, s.key, value, owner)
    except cfgmod.ConstraintError as exc:
        raise BadConfig(f"{s.source}: {exc}") from None


def _splits(task: Any, name: str, request: Request) -> list[int]:
    n = task.n_splits()
    if request.split is not None:
        if not 0 <= request.split < n:
            raise BadConfig(f"--split {request.split}: task {name!r} has splits 0 .. {n - 1}")
        return [request.split]
    return list(range(n if request.splits is None else min(request.splits, n)))


def _resolve_pair(method_name: str, task_name: str, request: Request, used: set[int]) -> dict[str, Any] | str:
    """The spec (seed 0, split 0, no data yet) and task object of one pair, or the reason it is skipped."""
    from uqbench.methods import methods
    from uqbench.tasks import tasks

    method_cls, task_cls = methods.get(method_name), tasks.get(task_name)
    parts = {"method": method_cls.Config, "task": task_cls.Config, "recipe": TrainConfig, "backbone": BackboneConfig}
    named = owners(method_name, task_name)
    types = {part: cfgmod.field_types(cls) for part, cls in parts.items()}
    overrides: dict[str, dict[str, Any]] = {part: {} for part in PARTS}
    origins: dict[tuple[str, str], str] = {}  # (part, key) -> the source of the setting that won
    for i, s, part in applicable(request.settings, method_name, task_name, types):
        used.add(i)
        overrides[part][s.key] = typed(s, types[part][s.key], named[part])
        origins[part, s.key] = s.source

    def build(part: str, config_cls: type, fields: dict[str, Any]) -> Any:
        try:
            return cfgmod.build(config_cls, fields, named[part])
        except cfgmod.ConstraintError as exc:  # name the setting that gave the value, when one did
            source = origins.get((part, exc.key))
            if source is None:
                raise
            raise BadConfig(f"{source}: {exc}") from None

    method_config = build("method", method_cls.Config, overrides["method"])
    method = method_cls(method_config)
    task_config = build("task", task_cls.Config, overrides["task"])
    task = task_cls(task_config, data_dir=request.data_dir)
    reason = method.supports(task.kind)  # the instance's: a user's file decides its kind
    if reason is not None:
        if request.strict:
            method.check_kind(task.kind, task_name)
        return f"{method_name} on {task_name}: {method_name} {reason}"
    recipe = build("recipe", TrainConfig, {**cfgmod.to_dict(task_cls.recipe), **overrides["recipe"]})
    backbone = build("backbone", BackboneConfig, _backbone_fields(task_cls.backbone, overrides["backbone"]))
    code = {"uqbench": _version(), "method": methods.origin(method_name), "task": tasks.origin(task_name)}
    from uqbench.models.custom import CUSTOM

    if backbone.arch in CUSTOM:  # a factory registered in this process: its code is part of the run
        code["backbone"] = CUSTOM[backbone.arch]
    spec = RunSpec(method_name, method_config, task_name, task_config, recipe, backbone, 0, 0, {}, code)
    if request.search is not None:
        spec = dataclasses.replace(spec, search=_search(spec, task, request, types, named, used))
    return {"spec": spec, "task": task}


def _search(spec: RunSpec, task: Any, request: Request, types: dict[str, dict[str, Any]], named: dict[str, str],
            used: set[int]) -> Search | None:
    """The pair's grid (the axes it takes, each value typed and checked against its config), or None."""
    assert request.search is not None
    axes: dict[tuple[str, str], tuple[Any, ...]] = {}
    offset = len(request.settings)
    for i, s, part in applicable(request.search.grid, spec.method, spec.task, types):
        used.add(offset + i)
        values = tuple(typed(dataclasses.replace(s, value=v), types[part][s.key], named[part]) for v in s.value)
        for value in values:
            try:
                spec.with_values({(part, s.key): value})
            except BadConfig as exc:
                raise BadConfig(f"{s.source}: {exc}") from None
        axes[part, s.key] = values
    if not axes:
        return None
    from uqbench.metrics import reported

    if request.search.metric not in (keys := reported(task.kind, task.ood_sets, task.shifted_labels())):
        raise BadConfig(f"{request.search.source}: search.metric: task {spec.task!r} ({task.kind}) does not "
                        f"report {request.search.metric!r}; it reports: {', '.join(keys)}")
    return Search(request.search.metric, request.search.holdout, tuple((p, k, v) for (p, k), v in sorted(axes.items())))


def _backbone_fields(default: BackboneConfig, overrides: dict[str, Any]) -> dict[str, Any]:
    """The task's backbone with the overrides; another architecture drops the task's sizes for its own defaults."""
    fields = cfgmod.to_dict(default)
    if overrides.get("arch", default.arch) != default.arch:
        fields.update(width=None, depth=None)
    return {**fields, **overrides}


def _version() -> str:
    import uqbench

    return uqbench.__version__


def plan_table(specs: list[RunSpec]) -> tuple[list[str], list[list[str]]]:
    """(columns, rows) for `--dry-run`: one row per run with its id and every value that is not a default."""
    rows = []
    for spec in specs:
        rows.append([spec.id, spec.method, spec.task, str(spec.split), str(spec.seed), _changes(spec)])
    return ["id", "method", "task", "split", "seed", "settings (not class defaults)"], rows


def _changes(spec: RunSpec) -> str:
    parts = {"method": spec.method_config, "task": spec.task_config, "recipe": spec.recipe, "backbone": spec.backbone}
    out = []
    for part, config in parts.items():
        default = dataclasses.asdict(type(config)())
        out += [f"{part}.{k}={v!r}" for k, v in dataclasses.asdict(config).items() if default[k] != v]
    return ", ".join(out) or "-"


__all__ = ["Plan", "Request", "RunSpec", "SearchRequest", "method_names", "plan", "plan_table", "resolve"]
