"""Tables built from run directories: final results (long form), training curves, mask diagnostics.

The results table has the columns of `mtrl_bench.stats.COLUMNS` (method, suite, quality, seed,
task, metric, value, protocol) plus ``run`` (the directory name), ``base_method`` and ``suite_id``
(the exact suite, e.g. ``random5-2``, where ``suite`` is its tabulated family ``random5``). A
finished run gives per-task rows and a ``__mean__`` row for ``success``, and for ``return`` when
its evaluation ran full episodes (``eval.early_stop = false``): with early stopping an episode ends
at its first success, so its return is a truncated sum that would rank a method that succeeds
sooner lower.

The protocol id is ``v3-scripted-replay[-<recipe>]/<profile>``: Meta-World v3, locally generated
scripted replay data of that recipe (none for v1), and the scale profile; runs of different
protocols are never pooled by the stats.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtrl_bench.display import MASK_DIAGNOSTICS
from mtrl_bench.runs import RunDir, read_json
from mtrl_bench.stats import COLUMNS, MEAN_TASK

PROTOCOL = "v3-scripted-replay"
EXTRA_COLUMNS = ("run", "base_method", "suite_id", "numerics")
CURVE_COLUMNS = ("method", "suite", "quality", "seed", "protocol", "run", "step", "kind",
                 "metric", "value")
MASK_COLUMNS = ("step", "source", "key", "task", "value")
ALL_TASKS = -1  # the `task` of a scalar mask diagnostic (not per task)


def protocol_id(config: dict[str, Any]) -> str:
    """`v3-scripted-replay/<profile>`, with the data recipe when it is not v1 (configs written
    before recipes were selectable used v1 and keep their id)."""
    recipe = config.get("data", {}).get("recipe", "scripted-replay-v1")
    tag = "" if recipe == "scripted-replay-v1" else "-" + recipe.removeprefix("scripted-replay-")
    return f"{PROTOCOL}{tag}/{config.get('profile', 'unknown')}"


# What a run's method, seed and cell do not decide: runs pool only when all the rest agrees.
NOT_PROTOCOL = ("method", "method_config", "seed", "suite", "quality", "profile")


def protocol_settings(entry: dict[str, Any]) -> dict[str, Any]:
    """A run's config as "section.field" -> value, without what may differ between runs that
    pool: method and its config, seed, the cell (suite, quality) and the fields its sweep point
    sets (its label names them)."""
    swept = {k for s in entry.get("sweeps") or [] for k in s.get("point", {})}
    flat = {}
    for section, fields in entry["config"].items():
        if section in NOT_PROTOCOL:
            continue
        for name, value in (fields.items() if isinstance(fields, dict) else [("", fields)]):
            key = f"{section}.{name}" if name else section
            if key not in swept:
                flat[key] = value
    return flat


def _minorities(values: dict[str, tuple[Any, dict[str, Any]]]
                ) -> Iterator[tuple[Any, list[str], int, list[str]]]:
    """Runs that share a name (run -> (name, settings)) but not their settings: per name, the
    most common settings keep it; yields (name, the other runs of one settings, how many runs
    keep it, their differing fields as "field=value")."""
    import json

    groups: dict[Any, dict[str, list[str]]] = {}
    for run, (name, settings) in sorted(values.items()):
        key = json.dumps(settings, sort_keys=True, default=str)
        groups.setdefault(name, {}).setdefault(key, []).append(run)
    for name, by_settings in groups.items():
        main = max(by_settings, key=lambda k: (len(by_settings[k]), k))
        common = json.loads(main)
        for key, runs in by_settings.items():
            if key != main:
                other = json.loads(key)
                yield name, runs, len(by_settings[main]), [
                    f"{f}={other.get(f)}" for f in sorted(set(other) | set(common))
                    if other.get(f) != common.get(f)]


def split_protocols(settings: dict[str, tuple[str, dict[str, Any]]]
                    ) -> tuple[dict[str, str], list[str]]:
    """Runs under one protocol id whose settings differ are not pooled: the most common settings
    keep the id, the others get it with their differing fields, e.g.
    ``v3-scripted-replay-v2/cpu[train.steps=40]``. Returns (run -> new id, notes)."""
    relabel, notes = {}, []
    for pid, runs, kept, diff in _minorities(settings):
        new = f"{pid}[{','.join(diff)}]"
        relabel.update(dict.fromkeys(runs, new))
        notes.append(f"{len(runs)} run(s) of protocol {pid} differ from its other {kept} in "
                     f"{', '.join(diff)}: not pooled with them (reported as protocol {new})")
    return relabel, notes


def split_methods(variants: dict[str, tuple[str, str, dict[str, Any]]]
                  ) -> tuple[dict[str, str], list[str]]:
    """Runs reported under one method label and protocol whose method configs differ are not
    one method: the most common config keeps the label, the others get it with their differing
    fields, as a sweep point is named (``socodt[beta_scale=0.01]``). `variants`: run ->
    (protocol, label, method config). Returns (run -> new label, notes)."""
    renamed, notes = {}, []
    pairs = {run: ((protocol, label), config) for run, (protocol, label, config)
             in variants.items()}
    for (protocol, label), runs, kept, diff in _minorities(pairs):
        fields = ", ".join(diff)
        new = f"{label[:-1]}, {fields}]" if label.endswith("]") else f"{label}[{fields}]"
        renamed.update(dict.fromkeys(runs, new))
        notes.append(f"{len(runs)} run(s) labelled {label} ({protocol}) have another method "
                     f"config than its other {kept} ({fields}): not pooled with them "
                     f"(reported as {new})")
    return renamed, notes


def runs_folder(experiment_dir: Path) -> Path:
    """`<experiment>/runs` when it exists, else the directory itself (a bare folder of runs)."""
    experiment_dir = Path(experiment_dir)
    nested = experiment_dir / "runs"
    return nested if nested.is_dir() else experiment_dir


def _is_run(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists() for f in ("config.json", "status.json"))


def _entries(experiment_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The runs to tabulate: the grid's (grid.json) when there is one, else every run folder."""
    from mtrl_bench.grid import read_grid

    folder = runs_folder(experiment_dir)
    on_disk = {p.name for p in folder.iterdir() if _is_run(p)} if folder.is_dir() else set()
    grid = read_grid(experiment_dir)
    notes = []
    if grid is None:
        entries = []
        for name in sorted(on_disk):
            run = RunDir(folder / name)
            if not run.config_path.exists():
                notes.append(f"{name}: no config.json ({run.status().get('state')}); skipped")
                continue
            try:
                c = read_json(run.config_path)
                entries.append({"name": name, "method": c["method"], "label": c["method"],
                                "suite": c["suite"], "suite_label": c["suite"],
                                "quality": c["quality"], "seed": c["seed"], "config": c})
            except (ValueError, KeyError, TypeError) as exc:
                notes.append(f"{name}: damaged config.json, left out: {exc}")
        return entries, notes
    entries = grid["runs"]
    extra = on_disk - {e["name"] for e in entries}
    if extra:
        notes.append(f"{len(extra)} run folder(s) not in this experiment's grid were left out "
                     f"(an older grid?): {', '.join(sorted(extra)[:3])}"
                     + (" ..." if len(extra) > 3 else ""))
    return entries, notes


def _problem(entry: dict[str, Any], run: RunDir) -> str | None:
    """Why a grid run has no results, in one line; None when it is complete."""
    if run.complete and run.eval_path.exists():
        return None
    what = f"{entry['label']} {entry['suite']} {entry['quality']} seed {entry['seed']}"
    if not run.path.exists():
        return f"{what}: not run yet ({entry['name']})"
    status = run.status()
    state = status.get("state", "new")
    steps = entry["config"]["train"]["steps"]
    if state == "failed":
        return f"{what}: failed: {status.get('error', 'no error recorded')} ({run.path.name})"
    if run.complete:
        return f"{what}: marked DONE but eval.json is missing ({run.path.name})"
    step = status.get("step") or max((r["step"] for r in run.metrics()), default=None)
    at = f" at step {step} of {steps}" if step else ""
    return f"{what}: {state}{at}, incomplete; `mtrl-bench run` resumes it ({run.path.name})"


def collect(*experiment_dirs: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """(long results table, problems): one line per missing, failed or incomplete run.

    Several directories make one table (e.g. Table 1's MT5 and MT30 grids, run apart): a run
    found in more than one counts once, from the first directory that has it finished."""
    if not experiment_dirs:
        raise ValueError("collect: no experiment directory given")
    rows, problems, numerics, settings, variants = [], [], {}, {}, {}
    many = len(experiment_dirs) > 1
    for experiment_dir in map(Path, experiment_dirs):
        got, troubles = _collect_one(experiment_dir, numerics, settings, variants)
        seen = {r["run"] for r in rows}
        again = sorted({r["run"] for r in got} & seen)
        rows += [r for r in got if r["run"] not in seen]
        problems += [f"{experiment_dir}: {t}" if many else t for t in troubles]
        if again:
            problems.append(f"{experiment_dir}: {len(again)} run(s) also in an earlier directory, "
                            f"counted once from there: {', '.join(again[:3])}"
                            + (" ..." if len(again) > 3 else ""))
    kinds = Counter(numerics.values())
    if len(kinds) > 1:  # execution is not identity, but bf16 and fp32 runs differ in their bits
        problems.append("runs of different numerics pooled (autocast as recorded in the "
                        "manifests): " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    df = pd.DataFrame(rows, columns=[*COLUMNS, *EXTRA_COLUMNS])
    df["seed"] = df["seed"].astype(int)
    relabel, notes = split_protocols(settings)
    if relabel:
        df["protocol"] = [relabel.get(run, p) for run, p in zip(df["run"], df["protocol"])]
    protocols = dict(zip(df["run"], df["protocol"]))
    renamed, more = split_methods({run: (protocols[run], *v) for run, v in variants.items()
                                   if run in protocols})
    if renamed:
        df["method"] = [renamed.get(run, m) for run, m in zip(df["run"], df["method"])]
    return df, problems + notes + more


def _collect_one(experiment_dir: Path, numerics: dict[str, str],
                 settings: dict[str, tuple[str, dict[str, Any]]],
                 variants: dict[str, tuple[str, dict[str, Any]]]
                 ) -> tuple[list[dict[str, Any]], list[str]]:
    """One directory's result rows and problems; records each run's numerics in `numerics`,
    its protocol settings (`protocol_settings`) in `settings` and its (label, method config)
    in `variants`."""
    if not experiment_dir.is_dir():
        raise FileNotFoundError(f"no such experiment directory: {experiment_dir}")
    folder = runs_folder(experiment_dir)
    entries, notes = _entries(experiment_dir)
    rows, problems = [], []
    for entry in entries:
        run = RunDir(folder / entry["name"])
        try:  # one damaged run is named, the others are reported
            problem = _problem(entry, run)
            if problem:
                problems.append(problem)
                continue
            kind = _numerics(run)
            result = checked_result(read_json(run.eval_path), entry["suite"], run.eval_path.name)
            rows += _rows(entry, result, kind)
            numerics.setdefault(entry["name"], kind)
            settings.setdefault(entry["name"], (protocol_id(entry["config"]),
                                                protocol_settings(entry)))
            variants.setdefault(entry["name"], (entry["label"],
                                                entry["config"].get("method_config") or {}))
        except (ValueError, KeyError, TypeError) as exc:
            what = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            problems.append(f"{entry['name']}: damaged, left out: {what}")
    references, left_out = _references(experiment_dir, entries)
    for entry, result in references:
        try:
            result = checked_result(result, entry["suite"], f"{entry['name']}.json")
        except ValueError as exc:
            left_out.append(f"damaged: {exc}")
            continue
        rows += _rows(entry, result, "fp32")  # the BC references never autocast
        settings.setdefault(entry["name"], (protocol_id(entry["config"]),
                                            protocol_settings(entry)))
    if left_out:
        notes.append(f"{len(left_out)} reference file(s) not of this grid's runs and protocol were "
                     f"left out: {', '.join(left_out[:3])}" + (" ..." if len(left_out) > 3 else ""))
    return rows, problems + notes


def _numerics(run: RunDir) -> str:
    """The autocast a run trained under, from its manifest ("fp32", "bfloat16", "a+b")."""
    executions = read_json(run.manifest_path).get("executions", []) if (
        run.manifest_path.exists()) else []
    amps = {str(e.get("amp")) for e in executions} or {"unrecorded"}
    return "+".join(sorted("fp32" if a.lower() in ("none", "null") else a for a in amps))


def _references(experiment_dir: Path, entries: list[dict[str, Any]]
                ) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], list[str]]:
    """The experiment's BC reference results (`mtrl_bench.reference`) that belong to its runs,
    as results entries; and the names of the reference files left out."""
    from mtrl_bench.baselines import REFERENCES_DIR, matching_references
    from mtrl_bench.grid import read_grid

    grid = read_grid(experiment_dir) or {}
    refs, left_out = matching_references(experiment_dir / REFERENCES_DIR, entries,
                                         grid.get("reference_seeds"))
    out = []
    for ref in refs:
        cfg = ref["config"]
        name = f"{ref['reference']}__{cfg['suite']}__{cfg['quality']}__s{cfg['seed']}"
        out.append(({"name": name, "method": ref["reference"], "label": ref["reference"],
                     "suite": cfg["suite"], "suite_label": ref["suite_label"],
                     "quality": cfg["quality"], "seed": cfg["seed"], "config": cfg},
                    ref["result"]))
    return out, left_out


def _close(stored: float, exact: float) -> bool:
    """Equal up to the rounding results are stored with (`runs.rounded`, 6 significant digits:
    the mean of rounded episode returns and the rounded mean differ by up to ~1e-5)."""
    return math.isclose(stored, exact, rel_tol=1e-4, abs_tol=1e-9)


def _numbers(values: Any, what: str) -> list[float]:
    if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in values):
        raise ValueError(f"{what}: not a list of finite numbers")
    return [float(v) for v in values]


def checked_result(result: Any, suite: str, source: str) -> dict[str, Any]:
    """An evaluation result (a run's eval.json, a reference's result) as the evaluator writes
    it, else ValueError saying what is wrong: a hand-edited, truncated or crafted file must not
    move a table. Its tasks are the suite's; each task's success is the mean of its 0/1
    episode outcomes, its return the mean of its episode returns; the run's values are the
    means over tasks. `source` names the file in the error."""
    try:
        return _checked_result(result, suite)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def _checked_result(result: Any, suite: str) -> dict[str, Any]:
    from mtrl_bench_envs.suites import get_suite

    if not isinstance(result, dict) or not isinstance(result.get("tasks"), dict):
        raise ValueError("no per-task results ('tasks')")
    tasks = result["tasks"]
    expected = get_suite(suite).tasks
    if set(tasks) != set(expected):
        wrong = sorted(set(expected) ^ set(tasks))
        raise ValueError(f"its tasks are not {suite}'s ({len(tasks)} for {len(expected)}; "
                         f"differ in {', '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''})")
    for task, r in tasks.items():
        if not isinstance(r, dict):
            raise ValueError(f"{task}: not a result")
        e = r.get("episodes")
        successes = _numbers(r.get("successes"), f"{task} successes")
        returns = _numbers(r.get("returns"), f"{task} returns")
        if not (isinstance(e, int) and e > 0 and len(successes) == len(returns) == e):
            raise ValueError(f"{task}: 'episodes' ({e!r}) is not the number of episodes recorded")
        if any(s not in (0.0, 1.0) for s in successes):
            raise ValueError(f"{task}: an episode's success is not 0 or 1")
        for metric, values in (("success", successes), ("return", returns)):
            value = r.get(metric)
            if not (isinstance(value, (int, float)) and _close(value, sum(values) / e)):
                raise ValueError(f"{task}: {metric} {value!r} is not the mean of its episodes")
    for metric in ("success", "return"):
        value = result.get(metric)
        mean = sum(r[metric] for r in tasks.values()) / len(tasks)
        if not (isinstance(value, (int, float)) and _close(value, mean)):
            raise ValueError(f"{metric} {value!r} is not the mean over its tasks")
    return result


def _rows(entry: dict[str, Any], result: dict[str, Any], numerics: str) -> list[dict[str, Any]]:
    cfg = entry["config"]
    base = {"method": entry["label"], "suite": entry["suite_label"], "quality": entry["quality"],
            "seed": int(entry["seed"]), "protocol": protocol_id(cfg), "run": entry["name"],
            "base_method": entry["method"], "suite_id": entry["suite"], "numerics": numerics}
    metrics = ["success"] + (["return"] if not cfg["eval"]["early_stop"] else [])
    rows = []
    for metric in metrics:
        for task, r in result["tasks"].items():
            rows.append({**base, "task": task, "metric": metric, "value": float(r[metric])})
        rows.append({**base, "task": MEAN_TASK, "metric": metric, "value": float(result[metric])})
    return rows


def provenance(*experiment_dirs: str | Path, runs: set[str] | None = None) -> pd.DataFrame:
    """Where each reported cell comes from: per method and cell, its seeds, the numerics and
    the hardware (device, and the CPU model where the manifest records it) its runs trained
    on. `runs`: only these (default: every run found)."""
    rows = []
    for name, (entry, path) in run_folders(*experiment_dirs).items():
        if runs is not None and name not in runs:
            continue
        run = RunDir(path)
        try:  # provenance is shown, never computed with: a damaged manifest says "unrecorded"
            executions = read_json(run.manifest_path).get("executions", [])
            numerics = _numerics(run)
        except (OSError, ValueError, AttributeError):
            executions, numerics = [], "unrecorded"
        where = sorted({f"{e.get('device', '?')}" + (f" ({e['cpu']})" if e.get("cpu") else "")
                        for e in executions if isinstance(e, dict)}) or ["unrecorded"]
        rows.append({"method": entry["label"], "suite": entry["suite_label"],
                     "quality": entry["quality"], "protocol": protocol_id(entry["config"]),
                     "seed": int(entry["seed"]), "numerics": numerics,
                     "hardware": "; ".join(where)})
    columns = ["method", "suite", "quality", "protocol", "seeds", "numerics", "hardware"]
    if not rows:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame(rows)
    out = df.groupby(["method", "suite", "quality", "protocol"], sort=False).agg(
        seeds=("seed", lambda s: ", ".join(map(str, sorted(set(s))))),
        numerics=("numerics", lambda s: "+".join(sorted(set(s)))),
        hardware=("hardware", lambda s: " | ".join(sorted(set(s))))).reset_index()
    return out.loc[:, columns]


# --------------------------------------------------------------------------- curves

def run_curve(run_dir: str | Path) -> pd.DataFrame:
    """One run's curve: train loss at every logged step, eval success/return where evaluated."""
    run = RunDir(Path(run_dir))
    rows = []
    for r in run.metrics():
        if r.get("kind") == "train" and "loss" in r:
            rows.append({"step": r["step"], "kind": "train", "metric": "loss", "value": r["loss"]})
        elif r.get("kind") == "eval":
            rows += [{"step": r["step"], "kind": "eval", "metric": m, "value": r[m]}
                     for m in ("success", "return") if m in r]
    return pd.DataFrame(rows, columns=["step", "kind", "metric", "value"])


def run_folders(*experiment_dirs: str | Path) -> dict[str, tuple[dict[str, Any], Path]]:
    """Run name -> (its grid entry, its directory) of every run on disk, from the first of
    `experiment_dirs` that has it."""
    found: dict[str, tuple[dict[str, Any], Path]] = {}
    for experiment_dir in map(Path, experiment_dirs):
        folder = runs_folder(experiment_dir)
        for entry in _entries(experiment_dir)[0]:
            if entry["name"] not in found and (folder / entry["name"]).is_dir():
                found[entry["name"]] = entry, folder / entry["name"]
    return found


def training_curves(*experiment_dirs: str | Path) -> pd.DataFrame:
    """Every grid run's curve (finished or not), labelled like the results table."""
    frames = []
    for entry, path in run_folders(*experiment_dirs).values():
        curve = run_curve(path)
        if curve.empty:
            continue
        frames.append(curve.assign(
            method=entry["label"], suite=entry["suite_label"], quality=entry["quality"],
            seed=int(entry["seed"]), protocol=protocol_id(entry["config"]), run=entry["name"]))
    if not frames:
        return pd.DataFrame(columns=list(CURVE_COLUMNS))
    return pd.concat(frames, ignore_index=True).loc[:, list(CURVE_COLUMNS)]


# --------------------------------------------------------------------------- mask diagnostics

def cosine_means(logged: list) -> tuple[list[float], float]:
    """Per task, the mean gradient cosine with the other tasks; and the mean over all pairs (with
    equal counts per task, the mean of the per-task means). Runs logged before 2026-11-28 hold the
    N x N matrix instead of the per-task means."""
    if logged and isinstance(logged[0], list):
        m = np.asarray(logged, dtype=float)
        n = len(m)
        if n < 2:
            return [math.nan] * n, math.nan
        logged = ((m.sum(1) - m.diagonal()) / (n - 1)).tolist()
    per_task = [float(v) for v in logged]
    return per_task, float(np.mean(per_task)) if per_task else math.nan


def mask_diagnostics(run_dir: str | Path) -> pd.DataFrame:
    """Long table (step, source, key, task, value) of every mask update of a run; empty without
    masks. `source` is "mask" for the trainer's diagnostics and "strategy" for the method's.

    A list becomes one row per task; other numbers have task = -1 (all tasks). ``grad_cosine``
    (per task, the mean gradient cosine with the other tasks; older runs logged the N×N matrix)
    also gives the scalar ``grad_cosine_mean`` (mean over all pairs). Records written before the
    two sources were kept apart (one "mask" dict, per-task values as ``name/i``) are read the same
    way.
    """
    rows = []
    for record in RunDir(Path(run_dir)).metrics():
        if record.get("kind") != "train" or not isinstance(record.get("mask"), dict):
            continue
        step = record["step"]
        if isinstance(record.get("strategy"), dict):
            sources = [("mask", record["mask"]), ("strategy", record["strategy"])]
        else:  # the old single dict
            old = record["mask"]
            sources = [("mask", {k: v for k, v in old.items() if k in MASK_DIAGNOSTICS}),
                       ("strategy", {k: v for k, v in old.items()
                                     if k not in MASK_DIAGNOSTICS})]
        for source, diag in sources:
            rows += _diagnostic_rows(step, source, diag)
    return pd.DataFrame(rows, columns=list(MASK_COLUMNS))


def _diagnostic_rows(step: int, source: str, diag: dict[str, Any]) -> list[tuple]:
    rows = []
    for key, value in diag.items():
        if key == "grad_cosine" and isinstance(value, list):
            per_task, mean = cosine_means(value)
            rows += [(step, source, key, i, v) for i, v in enumerate(per_task)]
            rows.append((step, source, "grad_cosine_mean", ALL_TASKS, mean))
        elif isinstance(value, list):
            rows += [(step, source, key, i, float(v)) for i, v in enumerate(value)
                     if isinstance(v, (int, float)) and not isinstance(v, bool)]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            name, _, index = key.rpartition("/")
            if name and index.isdigit():  # the old per-task convention
                rows.append((step, source, name, int(index), float(value)))
            else:
                rows.append((step, source, key, ALL_TASKS, float(value)))
    return rows


# --------------------------------------------------------------------------- mask activity

ACTIVITY_COLUMNS = ("method", "suite", "quality", "protocol", "seed", "run", "updates",
                    "density_initial", "density_final", "conflict_share", "recover_share",
                    "conflict_nonempty", "moved_share", "inert", "inert_basis")
INERT_DENSITY = 0.02  # masks within 2 points of their initial density ...
INERT_MOVED = 0.02  # ... and, where logged, fewer than 2% of the entries ever switched


def maskable_entries(config: dict[str, Any]) -> int:
    """How many entries a run's masks cover: per block, the attention (C x 3C, C x C) and MLP
    (C x 4C, 4C x C) weight matrices (`PromptDT.maskable_parameters`, checked by a test)."""
    model = config["model"]
    return 12 * model["embed_dim"] ** 2 * model["n_layer"]


def run_activity(config: dict[str, Any], diag: pd.DataFrame) -> dict[str, Any] | None:
    """What one run's masks did, from its mask diagnostics; None for a run without masks.

    Shares are of the maskable entries, averaged over tasks and updates: ``conflict_share`` and
    ``recover_share`` from a strategy that reports its sets as ``conflict_size`` and
    ``recover_size`` (the TAMU convention, masking.py), ``moved_share`` from the trainer's
    ``masked`` + ``restored`` counts (runs trained since 2026-12-03); NaN where not logged.
    ``conflict_nonempty``: the share of task-updates whose conflict set was not empty. The initial
    density is 1 − the method's ``sparsity`` when it has one (ERK initialisation), else the first
    logged. ``inert``: the masks barely moved (see INERT_DENSITY, INERT_MOVED).
    """
    density = diag[(diag["source"] == "mask") & (diag["key"] == "density")]
    if density.empty:
        return None
    n = maskable_entries(config)
    by_step = density.groupby("step")["value"].mean()
    sparsity = (config.get("method_config") or {}).get("sparsity")
    initial = 1.0 - float(sparsity) if isinstance(sparsity, (int, float)) else by_step.iloc[0]

    def per_task(source: str, key: str) -> pd.Series:
        return diag[(diag["source"] == source) & (diag["key"] == key) & (diag["task"] >= 0)][
            "value"]

    conflict, recover = per_task("strategy", "conflict_size"), per_task("strategy", "recover_size")
    moved = [per_task("mask", k) for k in ("masked", "restored")]
    moved_share = ((moved[0].mean() + moved[1].mean()) / n) if len(moved[0]) else math.nan
    total_moved = moved_share * len(by_step)
    final = float(by_step.iloc[-1])
    inert = abs(final - initial) < INERT_DENSITY and not total_moved >= INERT_MOVED
    basis = "density" if math.isnan(moved_share) else "density and switches"
    return {"inert_basis": basis, "updates": len(by_step), "density_initial": float(initial),
            "density_final": final,
            "conflict_share": conflict.mean() / n if len(conflict) else math.nan,
            "recover_share": recover.mean() / n if len(recover) else math.nan,
            "conflict_nonempty": float((conflict > 0).mean()) if len(conflict) else math.nan,
            "moved_share": moved_share, "inert": bool(inert)}


TRAJECTORY_COLUMNS = ("method", "suite", "quality", "protocol", "seed", "run", "step", "key",
                      "value")


def mask_activity(*experiment_dirs: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per masked grid run (finished or not) of the directories: (its `run_activity`, one row
    per run; its trajectory: per update the task-mean density and, where logged, conflict and
    recover shares), labelled like the results table."""
    rows, curves = [], []
    for entry, path in run_folders(*experiment_dirs).values():
        diag = mask_diagnostics(path)
        activity = run_activity(entry["config"], diag)
        if activity is None:
            continue
        label = {"method": entry["label"], "suite": entry["suite_label"],
                 "quality": entry["quality"], "protocol": protocol_id(entry["config"]),
                 "seed": int(entry["seed"]), "run": entry["name"]}
        rows.append({**label, **activity})
        n = maskable_entries(entry["config"])
        for (source, key), scale in {("mask", "density"): 1.0, ("strategy", "conflict_size"): n,
                                     ("strategy", "recover_size"): n}.items():
            picked = diag[(diag["source"] == source) & (diag["key"] == key) & (diag["task"] >= 0)]
            means = picked.groupby("step")["value"].mean() / scale
            curves += [{**label, "step": int(step), "key": key, "value": float(v)}
                       for step, v in means.items()]
    return (pd.DataFrame(rows, columns=list(ACTIVITY_COLUMNS)),
            pd.DataFrame(curves, columns=list(TRAJECTORY_COLUMNS)))


__all__ = ["PROTOCOL", "collect", "mask_activity", "mask_diagnostics", "protocol_id", "provenance",
           "run_activity", "run_curve", "training_curves"]
