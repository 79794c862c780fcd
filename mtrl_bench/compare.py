"""A method against reference runs of the same protocol: `mtrl-bench compare`.

The user names a method (with `--set` overrides), a protocol (suites, qualities, seeds, profile)
and folders of reference runs (default: every experiment committed in the clone's results/).
`compare` then
1. finds the finished reference runs whose config equals the user's runs' apart from method,
   method config and seed (`results.protocol_settings`), cell by cell; none found is an error
   that names the fields in which the nearest runs differ, never a comparison across protocols;
2. trains the user's runs that are missing (and the reference methods' runs, with
   `train_references`), as an experiment in `out` (resumable; its cost said first);
3. writes one report of the user's method against every reference method into
   `out/comparison` (the user's method is the one the others are tested against, so every row
   is a reference method's difference from it, Holm over the family) and returns its rows.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtrl_bench.config import Execution
from mtrl_bench.grid import Experiment, GridRun

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_REFERENCES = ("socodt", "harmodt-f", "prompt-dt")  # trained with train_references
BC_METHODS = ("bc-all", "bc-top20")


def committed_experiments() -> list[Path]:
    """The experiment folders of the clone's results/ (each with runs/)."""
    from mtrl_bench.cost import PACKAGE_RESULTS

    if not PACKAGE_RESULTS.is_dir():
        return []
    return sorted(p.parent for p in PACKAGE_RESULTS.glob("**/runs") if p.is_dir())


def compare_experiment(method: str, suites: Sequence[str], qualities: Sequence[str],
                       seeds: Sequence[int], profile: str, overrides: dict[str, Any],
                       references: Sequence[str] = ()) -> Experiment:
    """The grid of the user's method (plus reference methods to train, if any)."""
    from mtrl_bench.grid import parse_experiment, with_overrides

    methods = [method, *(m for m in references if m != method)]
    text = "\n".join([
        f'description = "{method} against reference runs of the same protocol"',
        f"methods = {json.dumps(methods)}", f"suites = {json.dumps(list(suites))}",
        f"qualities = {json.dumps(list(qualities))}", f"seeds = {json.dumps(list(seeds))}",
        f'profile = "{profile}"',
        # BC baselines of their own only beside references trained here: otherwise the
        # reference folders' baselines of the same protocol are reported
        f"reference_seeds = [{seeds[0] if references else ''}]", ""])
    exp = parse_experiment(text, "mtrl-bench compare", f"compare-{method}")
    return with_overrides(exp, overrides=overrides)


def _settings(entry: dict[str, Any]) -> tuple[str, str]:
    from mtrl_bench.results import protocol_id, protocol_settings

    return protocol_id(entry["config"]), json.dumps(protocol_settings(entry), sort_keys=True)


def _differences(want: dict[str, Any], have: dict[str, Any]) -> list[str]:
    return [f"{k} {have.get(k)!r} (yours: {want.get(k)!r})" for k in sorted(set(want) | set(have))
            if want.get(k) != have.get(k)]


@dataclass
class Match:
    runs: dict[str, Path]  # reference run name -> its folder
    dirs: list[Path]  # the experiment folders they come from
    methods: list[str]  # reference labels found


def match_references(mine: Sequence[GridRun], dirs: Sequence[Path],
                     methods: Sequence[str] | None = None) -> Match:
    """Finished runs under `dirs` of other methods that share each of `mine`'s cells and its
    protocol exactly; `methods` limits them to those labels (default: every base method, not
    sweep points). Raises ValueError naming the nearest protocol's differences when none do."""
    from mtrl_bench.results import protocol_settings, run_folders
    from mtrl_bench.runs import RunDir

    own = {r.method for r in mine}
    wanted = {}
    for r in mine:
        entry = {"config": r.config.to_dict(), "sweeps": r.sweeps}
        wanted[(r.suite_label, r.quality)] = _settings(entry)
    found: dict[str, Path] = {}
    sources: set[Path] = set()
    labels: set[str] = set()
    nearest: tuple[int, str, list[str]] | None = None
    for d in dirs:
        for name, (entry, path) in run_folders(d).items():
            label = entry.get("label", entry["method"])
            if entry["method"] in own or (methods and label not in methods) or (
                    not methods and label != entry["method"]):
                continue
            cell = (entry.get("suite_label", entry["suite"]), entry["quality"])
            if cell not in wanted or not RunDir(path).complete:
                continue
            if _settings(entry) == wanted[cell]:
                found.setdefault(name, path)
                sources.add(Path(d))
                labels.add(label)
                continue
            diff = _differences(json.loads(wanted[cell][1]), protocol_settings(entry))
            if wanted[cell][0] != _settings(entry)[0]:
                diff.insert(0, f"protocol {_settings(entry)[0]} (yours: {wanted[cell][0]})")
            if nearest is None or len(diff) < nearest[0]:
                nearest = (len(diff), f"{Path(d)} ({label}, {name})", diff)
    if not found:
        cells = ", ".join(f"{s} {q}" for s, q in sorted(wanted))
        where = ", ".join(map(str, dirs)) or "(no folders)"
        if nearest is None:
            raise ValueError(f"no finished reference run of {cells} in {where}; name folders "
                             "with --against, or train the references with --train-references")
        raise ValueError(f"no reference run in {where} shares your runs' protocol ({cells}); "
                         f"the nearest, {nearest[1]}, differs in " + "; ".join(nearest[2][:6])
                         + ("; ..." if len(nearest[2]) > 6 else "")
                         + ". Compare on that protocol, or --train-references")
    return Match(found, sorted(sources), sorted(labels))


@dataclass
class Comparison:
    results: pd.DataFrame  # the report's rows: the user's runs, the references, BC floors
    reference: str  # the user's method: every other is tested against it
    report: Path
    methods: list[str]  # reference methods compared with
    unfinished: int  # the user's runs that did not finish


def compare(method: str, out: Path, execution: Execution, *, suites: Sequence[str],
            qualities: Sequence[str], seeds: Sequence[int], profile: str = "cpu",
            overrides: dict[str, Any] | None = None, against: Sequence[Path] | None = None,
            references: Sequence[str] | None = None, train_references: bool = False,
            workers: int = 1, executor: str = "local", address: str | None = None) -> Comparison:
    """See the module docstring; `out` is the user's experiment folder."""
    from mtrl_bench import grid
    from mtrl_bench.experiment import run_experiment, write_report_files
    from mtrl_bench.outputs import claim

    to_train = list(references or DEFAULT_REFERENCES) if train_references else []
    exp = compare_experiment(method, suites, qualities, seeds, profile, overrides or {},
                             to_train)
    mine = [r for r in grid.expand(exp, out / "runs") if r.method == method]
    dirs = [Path(d) for d in (against if against is not None else committed_experiments())]
    match = None
    if not train_references:  # before anything is trained: a wrong protocol costs nothing
        match = match_references(mine, dirs, references)
    outcome = run_experiment(exp, out, execution, workers=workers, executor=executor,
                             address=address, reference=method, report=False)
    if train_references:
        match = match_references(mine, [out, *dirs], references)
    keep = set(match.runs) | {r.name for r in mine}
    report_dir = claim(out / "comparison", "report")
    dirs = list(dict.fromkeys([out, *match.dirs]))  # yours first: they count from there
    df, _, _ = write_report_files(dirs, method, out=report_dir,
                                  quiet=not execution.progress, checked=True,
                                  keep=lambda d: _selected(d, keep, mine))
    return Comparison(df, method, report_dir / "report.md", match.methods, outcome.unfinished)


def _selected(df: pd.DataFrame, runs: set[str], mine: Sequence[GridRun]) -> pd.DataFrame:
    """The compared runs' rows, and the BC floors of their cells and protocol."""
    import pandas as pd

    protocols = set(df.loc[df["run"].isin({r.name for r in mine}), "protocol"])
    cells = {(r.suite_label, r.quality) for r in mine}
    in_cells = pd.Series([(s, q) in cells for s, q in zip(df["suite"], df["quality"])],
                         index=df.index, dtype=bool)
    bc = df["base_method"].isin(BC_METHODS) & df["protocol"].isin(protocols) & in_cells
    return df[df["run"].isin(runs) | bc]


__all__ = ["Comparison", "committed_experiments", "compare", "compare_experiment",
           "match_references"]
