"""Experiments: grid files (TOML) expanded into runs, each keyed by its resolved config.

An *experiment* is a TOML file (built-ins in ``mtrl_bench/experiments/``; a user's own file works
the same way)::

    description = "one line"
    methods = ["method-a", "method-b"]  # registered names (`mtrl-bench methods`)
    suites = ["mt5"]              # "random5-2": 5 tasks drawn from MT50 with seed 2;
                                  # "random5-{seed}": the combination follows the run's seed
    qualities = ["sub-optimal"]
    seeds = [0, 1, 2]
    profile = "cpu"               # smoke | cpu | paper
    reference_seeds = [0]         # optional: seeds of the BC reference rows (default: seeds;
                                  # [] for none), see mtrl_bench.reference

    [overrides]                   # `section.field` values for every run (config.py sections)
    train.steps = 600
    method.alpha = 10             # method.* applies to the methods that have the field

    [[sweep]]                     # optional; each sweep adds its points to the grid
    name = "alpha"
    method.alpha = [5, 10, 20, 40]          # a list is an axis (cross product within a sweep)
    "method.q1,method.q3" = [[0.01, 0.99]]  # coupled keys move together

A list in ``[overrides]`` is an axis of every point. The grid is methods × suites × qualities ×
seeds × points; identical resolved configs are one run (a run is keyed by its config hash, so the
default point shared by several sweeps trains once). A run whose point changes a value of the
base config is labelled ``method[field=value, ...]``; that label is the results table's method.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from mtrl_bench.config import RunConfig
from mtrl_bench.runs import read_json, write_json

SECTIONS = ("model", "data", "train", "eval", "method")
GRID_KEYS = ("description", "methods", "suites", "qualities", "seeds", "profile", "overrides",
             "sweep", "reference_seeds")
SEED_FIELD = "{seed}"  # in a suite name: the suite is drawn with the run's training seed


# --------------------------------------------------------------------------- experiments

@dataclass(frozen=True)
class Sweep:
    """A set of override points: the cross product of its axes (coupled keys move together)."""

    name: str
    axes: dict[str, list[Any]]  # "train.steps" or "method.q1,method.q3" -> values

    def points(self) -> list[dict[str, Any]]:
        keys = list(self.axes)
        out = []
        for combo in itertools.product(*(self.axes[k] for k in keys)):
            point: dict[str, Any] = {}
            for key, value in zip(keys, combo):
                parts = key.split(",")
                point.update(zip(parts, value) if len(parts) > 1 else {key: value})
            out.append(point)
        return out


@dataclass(frozen=True)
class Experiment:
    name: str
    source: str  # the file it came from
    text: str  # the TOML as written (copied into the experiment directory)
    description: str
    methods: tuple[str, ...]
    suites: tuple[str, ...]
    qualities: tuple[str, ...]
    seeds: tuple[int, ...]
    profile: str
    overrides: dict[str, Any]  # scalar values only
    axes: dict[str, list[Any]]  # list-valued [overrides]: axes of every point
    sweeps: tuple[Sweep, ...]
    reference_seeds: tuple[int, ...] = ()  # BC references for these seeds of the grid


def builtin_experiments() -> list[str]:
    folder = resources.files("mtrl_bench").joinpath("experiments")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir()
                  if p.name.endswith(".toml"))


def load_experiment(name_or_path: str | Path) -> Experiment:
    """A built-in experiment by name, or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"experiment file not found: {path}")
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a text TOML file") from None
        return parse_experiment(text, str(path), path.stem)
    names = builtin_experiments()
    if str(name_or_path) not in names:
        from mtrl_bench_envs.common import unknown_name_message

        raise ValueError(unknown_name_message("experiment", str(name_or_path), names)
                         + " (or give the path of a .toml file)")
    res = resources.files("mtrl_bench").joinpath(f"experiments/{name_or_path}.toml")
    return parse_experiment(res.read_text(), f"mtrl_bench/experiments/{name_or_path}.toml",
                            str(name_or_path))


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"steps": 1}} -> {"train.steps": 1}; a key "q1,q3" under "method" becomes
    "method.q1,method.q3"."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        full = ",".join(prefix + part.strip() for part in key.split(","))
        if isinstance(value, dict):
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


def _check_axis(source: str, key: str, values: Any) -> list[Any]:
    coupled = len(key.split(","))
    if not isinstance(values, list) or not values:
        raise ValueError(f"{source}: '{key}' must be a non-empty list of values")
    if coupled > 1 and not all(isinstance(v, list) and len(v) == coupled for v in values):
        raise ValueError(f"{source}: coupled keys '{key}' need a list of {coupled}-element lists")
    return values


def _check_key(source: str, key: str) -> None:
    for part in key.split(","):
        section, _, name = part.partition(".")
        if section not in SECTIONS or not name:
            raise ValueError(f"{source}: override '{part}' must look like section.field with "
                             f"section in {', '.join(SECTIONS)}")


def _names(source: str, data: dict[str, Any], key: str, kind: type) -> tuple[Any, ...]:
    if key not in data:
        raise ValueError(f"{source}: missing '{key}' (a list)")
    values = data[key]
    if isinstance(values, kind):
        values = [values]
    ok = isinstance(values, list) and values and all(
        isinstance(v, kind) and not isinstance(v, bool) for v in values)
    if not ok:
        raise ValueError(f"{source}: '{key}' must be a non-empty list of {kind.__name__}")
    if len(set(values)) != len(values):
        raise ValueError(f"{source}: '{key}' lists a value twice")
    return tuple(values)


def parse_experiment(text: str, source: str, name: str) -> Experiment:
    """Parse and check the shape of an experiment; names are checked by `expand`."""
    from mtrl_bench_envs.common import check_plain_name

    try:
        check_plain_name("experiment", name)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}; rename the file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: malformed TOML: {exc}") from None  # names line and column
    except RecursionError:
        raise ValueError(f"{source}: malformed TOML: nested too deeply") from None
    from mtrl_bench_envs.common import unknown_name_message

    for key in data:
        if key not in GRID_KEYS:
            raise ValueError(f"{source}: " + unknown_name_message("key", key, GRID_KEYS))
    profile = data.get("profile", "cpu")
    if not isinstance(profile, str):
        raise ValueError(f"{source}: 'profile' must be a string")
    raw = data.get("overrides", {})
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: [overrides] must be a table")
    overrides, axes = {}, {}
    for key, value in _flatten(raw).items():
        _check_key(source, key)
        if isinstance(value, list) or "," in key:
            axes[key] = _check_axis(source, key, value)
        else:
            overrides[key] = value
    sweeps = []
    raw_sweeps = data.get("sweep", [])
    if not isinstance(raw_sweeps, list):
        raise ValueError(f"{source}: sweeps are written [[sweep]] (an array of tables)")
    for i, table in enumerate(raw_sweeps):
        if not isinstance(table, dict):
            raise ValueError(f"{source}: sweep number {i + 1} is a {type(table).__name__}; "
                             "sweeps are written [[sweep]] (an array of tables)")
        table = dict(table)
        label = table.pop("name", None)
        flat = _flatten(table)
        if not flat:
            raise ValueError(f"{source}: [[sweep]] number {i + 1} sets no field")
        for key, value in flat.items():
            _check_key(source, key)
            flat[key] = _check_axis(source, key, value if isinstance(value, list) else [value])
        parts = [part for key in flat for part in key.split(",")]
        sweeps.append(Sweep(str(label or "+".join(parts)), flat))
    seeds = _names(source, data, "seeds", int)
    reference_seeds = data.get("reference_seeds", list(seeds))
    known = set(seeds)  # a set: a grid of a million seeds must not take minutes to check
    if not isinstance(reference_seeds, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s in known
            for s in reference_seeds):
        raise ValueError(f"{source}: 'reference_seeds' must be a list of the grid's seeds "
                         f"({', '.join(map(str, seeds))}), or [] for no BC reference")
    return Experiment(
        name=name, source=source, text=text, description=str(data.get("description", "")),
        methods=_names(source, data, "methods", str), suites=_names(source, data, "suites", str),
        qualities=_names(source, data, "qualities", str), seeds=seeds,
        profile=profile, overrides=overrides, axes=axes, sweeps=tuple(sweeps),
        reference_seeds=tuple(reference_seeds))


def with_overrides(exp: Experiment, profile: str | None = None,
                   overrides: dict[str, Any] | None = None, suites: Sequence[str] = (),
                   seeds: Sequence[int] = ()) -> Experiment:
    """The experiment with a command line's --profile, --set, --suite and --seed applied on top
    (they win; e.g. Table 1's methods on MT30 and MT50 at the paper's scale and seeds)."""
    overrides = dict(overrides or {})
    for key in overrides:
        _check_key("--set", key)
    seeds = tuple(dict.fromkeys(seeds)) or exp.seeds
    # BC references: the file's reference seeds among the new seeds; when the file names none of
    # them (and did not ask for none), the first new seed
    chosen = set(seeds)
    kept = tuple(s for s in exp.reference_seeds if s in chosen)
    reference_seeds = kept or (seeds[:1] if exp.reference_seeds else ())
    return dataclasses.replace(
        exp, profile=profile or exp.profile, overrides={**exp.overrides, **overrides},
        axes={k: v for k, v in exp.axes.items() if k not in overrides},
        suites=tuple(dict.fromkeys(suites)) or exp.suites, seeds=seeds,
        reference_seeds=reference_seeds)


# --------------------------------------------------------------------------- grid expansion

@dataclass
class GridRun:
    """One run of an experiment: what to train, where, and how it is labelled in results."""

    name: str  # run directory name: {suite}__{method}__{quality}__s{seed}__{hash}
    method: str
    label: str  # method, or method[field=value, ...] for a sweep point off the base config
    suite: str
    suite_label: str  # the suite as tabulated (`_suite_label`)
    quality: str
    seed: int
    config: RunConfig
    sweeps: list[dict[str, Any]] = field(default_factory=list)  # [{"name", "point"}]

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "config": self.config.to_dict()}  # as the run names it


def _method_fields(method: str) -> set[str]:
    from mtrl_bench.plugins import registry

    return {f.name for f in dataclasses.fields(registry().method(method).spec.config_cls)}


def _validate_names(exp: Experiment, methods: Sequence[str]) -> None:
    """Every name of the grid, before anything is built or run (close-match suggestions)."""
    from mtrl_bench.config import load_profile
    from mtrl_bench.plugins import registry
    from mtrl_bench_envs.card import check_quality
    from mtrl_bench_envs.common import unknown_name_message
    from mtrl_bench_envs.suites import get_suite

    reg = registry()
    for method in methods:
        reg.method(method)  # KeyError with a suggestion
    for suite in exp.suites:
        get_suite(suite.replace(SEED_FIELD, str(exp.seeds[0])))
    for quality in exp.qualities:
        check_quality(quality)
    load_profile(exp.profile)
    keys = {k for k in exp.overrides} | {p for k in exp.axes for p in k.split(",")}
    keys |= {p for s in exp.sweeps for k in s.axes for p in k.split(",")}
    method_fields = set().union(*(_method_fields(m) for m in methods))
    for key in sorted(k for k in keys if k.startswith("method.")):
        name = key.removeprefix("method.")
        if name not in method_fields:
            valid = sorted(method_fields) or ["(none: these methods have no fields)"]
            raise ValueError(unknown_name_message("method field", name, valid)
                             + f" (fields of {', '.join(methods)})")


def _points(exp: Experiment) -> list[tuple[dict[str, Any], str | None]]:
    """(overrides of a point, sweep name) for every point of the grid."""
    base = Sweep("", exp.axes).points() if exp.axes else [{}]
    if not exp.sweeps:
        return [(p, None) for p in base]
    return [({**b, **p}, s.name) for s in exp.sweeps for p in s.points() for b in base]


def _suite_label(suite_name: str) -> str:
    """How a grid's suite is tabulated: "random5-{seed}" (a new combination per seed) pools under
    "random5", its seeds the replicates; a named combination ("random5-2") is its own suite, its
    seeds the replicates (pooled, two combinations would share seed numbers and tasks differ)."""
    return suite_name.replace("-" + SEED_FIELD, "").replace(SEED_FIELD, "")


def _label(method: str, point: dict[str, Any], base: dict[str, Any]) -> str:
    """method[field=value, ...] over the point's fields whose value differs from the base."""
    changed = []
    for key, value in point.items():
        section, _, name = key.partition(".")
        current = (base["method_config"] if section == "method" else base[section]).get(name)
        if current != value:
            changed.append(f"{name if section == 'method' else key}={value}")
    return f"{method}[{', '.join(changed)}]" if changed else method


MAX_RUNS = 10_000  # a grid larger than this is a typo more often than a plan: asked for, not run


def grid_size(exp: Experiment) -> int:
    """Runs the grid names before deduplication (cheap: nothing is built)."""
    points = len(Sweep("", exp.axes).points()) if exp.axes else 1
    if exp.sweeps:
        points *= sum(len(s.points()) for s in exp.sweeps)
    return len(exp.seeds) * len(exp.suites) * len(exp.qualities) * points * len(exp.methods)


def _cost_of_all(exp: Experiment, runs_root: Path, max_runs: int) -> str:
    """One core's time for the whole grid, priced by its first seed's runs (the seeds of a grid
    cost the same) against the finished runs a clone carries."""
    from mtrl_bench.cost import PACKAGE_RESULTS, estimate
    from mtrl_bench.progress import duration

    one_seed = dataclasses.replace(exp, seeds=exp.seeds[:1])
    if grid_size(one_seed) > max_runs:
        return "too many runs per seed to price"
    cost = estimate([r.config.to_dict() for r in expand(one_seed, runs_root)], [PACKAGE_RESULTS])
    if not cost.measured + cost.stand_in:
        return "at minutes to hours a run"
    return f"~{duration(cost.seconds * len(exp.seeds))} of one core at the measured cost per run"


def expand(exp: Experiment, runs_root: Path, only_methods: Iterable[str] | None = None,
           max_runs: int = MAX_RUNS) -> list[GridRun]:
    """Validate the experiment and list its runs (deduplicated by resolved config); a grid of
    more than `max_runs` runs is refused, saying its size, before anything is expanded."""
    from mtrl_bench.api import Run
    from mtrl_bench_envs.common import unknown_name_message

    size = grid_size(exp)
    if size > max_runs:
        raise ValueError(
            f"{exp.source}: {size:,} runs ({len(exp.methods)} methods x {len(exp.suites)} "
            f"suites x {len(exp.qualities)} qualities x {len(exp.seeds)} seeds x sweep points) "
            f"is more than {max_runs:,} ({_cost_of_all(exp, runs_root, max_runs)}; likely a "
            f"typo); pass --max-runs {size} if it is meant")

    try:
        _validate_names(exp, exp.methods)  # the whole grid, whatever subset runs now
    except (KeyError, ValueError) as exc:
        msg = exc.args[0] if exc.args else str(exc)
        raise ValueError(f"{exp.source}: {msg}") from None
    methods = list(exp.methods)
    if only_methods:
        for name in only_methods:
            if name not in methods:
                raise ValueError("--only-method: " + unknown_name_message(
                    f"method of experiment '{exp.name}'", name, methods))
        methods = [m for m in methods if m in set(only_methods)]
    fields_of = {m: _method_fields(m) for m in methods}
    runs: dict[str, GridRun] = {}
    base_cfg: dict[str, dict[str, Any]] = {}
    grid = itertools.product(exp.seeds, exp.suites, exp.qualities, _points(exp), methods)
    for seed, suite_name, quality, (point, sweep), method in grid:
        # method.* fields apply to the methods that have them (a method without the field keeps
        # its config: one sweep over a masking hyperparameter also runs the unmasked baseline)
        keep = {k: v for k, v in point.items()
                if not k.startswith("method.") or k.removeprefix("method.") in fields_of[method]}
        base = {k: v for k, v in exp.overrides.items()
                if not k.startswith("method.") or k.removeprefix("method.") in fields_of[method]}
        suite = suite_name.replace(SEED_FIELD, str(seed))
        try:
            run = Run.prepare(method, suite, quality, seed, exp.profile, {**base, **keep},
                              runs_root=runs_root)
            if method not in base_cfg:
                base_cfg[method] = Run.prepare(method, suite, quality, seed, exp.profile, base,
                                               runs_root=runs_root).config.to_dict()
        except (KeyError, ValueError) as exc:
            msg = exc.args[0] if exc.args else str(exc)
            raise ValueError(f"{exp.source}: {method} on {suite}: {msg}") from None
        name = run.dir.path.name
        entry = runs.get(name)
        if entry is None:
            entry = runs[name] = GridRun(
                name, method, _label(method, keep, base_cfg[method]), suite,
                _suite_label(suite_name), quality, seed, run.config)
        if sweep is not None:
            entry.sweeps.append({"name": sweep, "point": keep})
    return list(runs.values())


def write_grid(exp: Experiment, runs: Sequence[GridRun], out: Path) -> None:
    """experiment.toml (as written) and grid.json (every run, its label and sweeps)."""
    from mtrl_bench_envs.common import atomic_write

    atomic_write(out / "experiment.toml", exp.text)
    write_json(out / "grid.json", {"experiment": exp.name, "source": exp.source,
                                   "description": exp.description, "profile": exp.profile,
                                   "suites": list(exp.suites), "seeds": list(exp.seeds),
                                   "overrides": exp.overrides,
                                   "reference_seeds": list(exp.reference_seeds),
                                   "runs": [r.to_dict() for r in runs]})


GRID_RUN_FIELDS = {"name": str, "method": str, "label": str, "suite": str, "suite_label": str,
                   "quality": str, "seed": int, "config": dict}


def read_grid(experiment_dir: Path) -> dict[str, Any] | None:
    """An experiment's grid.json (None when it has none), else ValueError naming the file and
    its fault: an experiment folder from elsewhere is untrusted, and its runs must be plain
    folder names inside it."""
    path = Path(experiment_dir) / "grid.json"
    if not path.exists():
        return None
    grid = read_json(path)
    try:
        _check_grid(grid)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return grid


def _check_grid(grid: Any) -> None:
    from mtrl_bench_envs.common import check_plain_name

    if not isinstance(grid, dict) or not isinstance(grid.get("runs"), list):
        raise ValueError("not a grid (no list of 'runs')")
    seeds = grid.get("reference_seeds")
    if seeds is not None and not (isinstance(seeds, list) and all(
            isinstance(x, int) and not isinstance(x, bool) for x in seeds)):
        raise ValueError("'reference_seeds' is not a list of integers")
    for i, run in enumerate(grid["runs"]):
        if not isinstance(run, dict):
            raise ValueError(f"run {i} is not an object")
        for key, kind in GRID_RUN_FIELDS.items():
            value = run.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"run {i}: {key!r} is missing or not a {kind.__name__}")
        check_plain_name(f"run {i}: run", run["name"])  # a folder inside this one
