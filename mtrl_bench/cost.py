"""What runs cost, said before they start: measured on finished runs of the same shape.

A finished run records its training seconds (learning-curve evaluations included) and its final
evaluation's seconds in eval.json. A run to do costs what finished runs of its shape cost (the
median): same method and method config, model, training, evaluation and data recipe, and the same
number of tasks; seed, quality and which tasks do not change the work. Failing that, runs of the
same shape under another method stand in (masked methods cost 1.2-1.4x an unmasked step, so this
is marked as rougher). The figures are those of the machines that made the runs, one core each.
"""
from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtrl_bench.progress import duration

PACKAGE_RESULTS = Path(__file__).resolve().parents[1] / "results"  # a clone's committed runs


def shape(config: dict[str, Any], tasks: int, with_method: bool = True) -> str:
    """The key runs of equal cost share (see the module docstring)."""
    data = {k: v for k, v in config.get("data", {}).items() if k not in ("data_seed",)}
    key = {"tasks": tasks, "data": data,
           **{k: config.get(k) for k in ("model", "train", "eval")}}
    if with_method:
        key.update(method=config.get("method"), method_config=config.get("method_config"))
    return json.dumps(key, sort_keys=True, default=str)


def _tasks(suite: str) -> int | None:
    from mtrl_bench_envs.suites import get_suite

    try:
        return len(get_suite(suite).tasks)
    except (KeyError, ValueError):
        return None


def measured(roots: Iterable[Path]) -> dict[str, list[float]]:
    """Seconds of every finished run under `roots` (folders holding runs/ or run folders),
    by shape, with and without the method. Unreadable runs are skipped: this is an estimate."""
    seconds: dict[str, list[float]] = defaultdict(list)
    seen: set[Path] = set()
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for done in root.glob("**/DONE"):
            run = done.parent.resolve()
            if run in seen:
                continue
            seen.add(run)
            try:
                config = json.loads((run / "config.json").read_text())
                result = json.loads((run / "eval.json").read_text())
                cost = float(result["train_seconds"]) + float(result["seconds"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            tasks = _tasks(str(config.get("suite")))
            if tasks is None or not cost > 0:
                continue
            seconds[shape(config, tasks)].append(cost)
            seconds[shape(config, tasks, with_method=False)].append(cost)
    return seconds


@dataclass(frozen=True)
class Estimate:
    seconds: float  # one core's seconds for the runs whose shape was measured
    runs: int  # runs to do
    measured: int  # of which a run of the same shape (and method) was measured
    stand_in: int  # of which only runs of another method were
    basis: int  # finished runs the figures come from

    def describe(self, workers: int) -> str:
        if not self.runs:
            return "nothing to train"
        runs = f"{self.runs} run{'s' if self.runs > 1 else ''} to train"
        if not self.measured and not self.stand_in:
            return f"{runs}; cost unknown (no finished run of this protocol to measure it by)"
        workers = max(1, min(workers, self.runs))
        known = self.measured + self.stand_in
        text = (f"{runs}, ~{duration(self.seconds)} of one core"
                + (f", ~{duration(self.seconds / workers)} on {workers} workers" if workers > 1
                   else "")
                + f" (median of {self.basis} finished runs of the same shape")
        if self.stand_in:
            text += f"; {self.stand_in} priced by another method's runs"
        if known < self.runs:
            text += f"; {self.runs - known} never measured, not counted"
        return text + ")"


def estimate(configs: Sequence[dict[str, Any]], roots: Iterable[Path]) -> Estimate:
    """The cost of training runs with these configs (RunConfig.to_dict()), from the finished
    runs under `roots`."""
    table = measured(roots)
    total, exact, stand_in, basis = 0.0, 0, 0, set()
    for config in configs:
        tasks = _tasks(str(config.get("suite"))) or 0
        for with_method in (True, False):
            key = shape(config, tasks, with_method)
            if key in table:
                total += statistics.median(table[key])
                exact += with_method
                stand_in += not with_method
                basis.add(key)
                break
    return Estimate(total, len(configs), exact, stand_in, sum(len(table[k]) for k in basis))


def split(run_dir: Path) -> dict[str, float | None]:
    """Where a finished run's time went, in seconds: setup (loading or generating its data, as
    the manifest records since 2026-12-04; None before), training steps, learning-curve
    evaluations (their own seconds, logged since 2026-12-04; None before, when they are inside
    training) and the final evaluation."""
    from mtrl_bench.runs import RunDir, read_json

    run = RunDir(Path(run_dir))
    result = read_json(run.eval_path)
    executions = read_json(run.manifest_path).get("executions", [])
    setups = [e.get("setup_seconds") for e in executions if isinstance(e, dict)]
    curves = [r.get("seconds") for r in run.metrics()
              if r.get("kind") == "eval" and r.get("step") != run.config().train.steps]
    curve = sum(curves) if curves and None not in curves else None
    train = float(result["train_seconds"])
    return {"setup": sum(setups) if setups and None not in setups else None,
            "training": train - curve if curve is not None else train,
            "curve evaluations": curve, "final evaluation": float(result["seconds"])}


__all__ = ["Estimate", "PACKAGE_RESULTS", "estimate", "measured", "shape", "split"]
