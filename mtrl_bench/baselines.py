"""The BC baselines' settings and stored results, readable without any training code.

Words, as the suite uses them: the *reference* of a report is the method every other is tested
against (SoCo-DT by default); the *BC baselines* (``bc-all``, ``bc-top20``) are behaviour cloning
on the same data, shown beside the methods and never tested (`mtrl_bench.reference` trains and
evaluates them; this module says which settings they have and which stored files belong to which
runs). ``bc-all`` clones every episode: the floor of what the data give. ``bc-top20`` clones each
task's best 20% of episodes: what filtering alone reaches, which can beat sequence models.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from mtrl_bench.stats import REFERENCE_ROWS


@dataclass(frozen=True)
class BCConfig:
    top_fraction: float = 1.0  # keep each task's best episodes by return: this share of them
    hidden: int = 256
    layers: int = 2
    lr: float = 1e-3
    batch: int = 256  # (state, action) pairs per step, from all tasks together
    steps: int = 6000


VARIANTS = dict(zip(REFERENCE_ROWS, (BCConfig(), BCConfig(top_fraction=0.2)), strict=True))


REFERENCES_DIR = "references"  # <experiment>/references/<variant>__<suite>__<quality>__s<seed>.json


def reference_protocol(config: dict, variant: str) -> dict:
    """What a reference depends on: the runs' suite, quality, seed, profile, data and evaluation
    settings, and its own BC settings; a stored reference is reused only if this matches."""
    keep = ("suite", "quality", "seed", "profile", "data", "eval")
    return {**{k: config[k] for k in keep}, "bc": asdict(VARIANTS[variant])}


def matching_references(folder: Path, runs: list[dict], seeds: list[int] | None
                        ) -> tuple[list[dict], list[str]]:
    """The stored references (files of `folder`) that belong to these grid runs (dicts of
    GridRun fields): same suite, quality and seed (one of `seeds`, if given) and the protocol
    those runs would give them. Returns (references, notes on the files left out)."""
    from mtrl_bench.runs import read_json

    wanted = {}
    for r in runs:
        if seeds is None or r["seed"] in seeds:
            wanted.setdefault((r["suite"], r["quality"], r["seed"]), r["config"])
    kept, left_out = [], []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            ref = read_json(path)
            cfg = ref["config"]
            config = wanted.get((cfg["suite"], cfg["quality"], cfg["seed"]))
            ok = (config is not None and ref["reference"] in VARIANTS
                  and ref["protocol"] == reference_protocol(config, ref["reference"]))
        except (ValueError, KeyError, TypeError) as exc:
            left_out.append(f"{path.name}: unreadable reference file ({exc})")
            continue
        if ok:
            kept.append(ref)
        else:
            left_out.append(path.name)
    return kept, left_out


__all__ = ["BCConfig", "REFERENCES_DIR", "VARIANTS", "matching_references", "reference_protocol"]
