"""Dataset cards (card.json + CARD.md), checksums and per-task statistics."""
from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
from tabulate import tabulate

from mtrl_bench_envs.common import atomic_write, unknown_name_message
from mtrl_bench_envs.experts import load_experts
from mtrl_bench_envs.suites import EPISODE_LENGTH, MT50_ORDER

CARD_FORMAT = 1
CARD_JSON, CARD_MD = "card.json", "CARD.md"
QUALITIES = ("near-optimal", "sub-optimal")
FILE_KEYS = ("observations", "actions", "rewards", "successes")  # required keys of <task>.npz


TASK_ENTRY_KEYS = ("file", "bytes", "sha256", "stats")  # what the card records per task file


class DatasetError(ValueError):
    """A dataset that is missing, malformed or does not match its card; names the file."""


def check_quality(quality: str) -> str:
    if quality not in QUALITIES:
        raise ValueError(unknown_name_message("quality", quality, QUALITIES))
    return quality


def quality_episodes(episodes: int, quality: str) -> int:
    """Near-optimal is the whole buffer; sub-optimal its first half (MTDiff/HarmoDT)."""
    return episodes if check_quality(quality) == "near-optimal" else episodes // 2


def save_npz(f: IO[bytes], arrays: Mapping[str, np.ndarray]) -> None:
    """An uncompressed .npz like np.savez, but with fixed zip timestamps: equal arrays give equal
    bytes, so a card's checksums can be compared across machines and re-runs."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.ascontiguousarray(array), allow_pickle=False)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def quality_stats(returns: np.ndarray, episode_success: np.ndarray) -> dict[str, dict[str, Any]]:
    """Card statistics of one task's buffer, for each quality's slice of it."""
    stats = {}
    for quality in QUALITIES:
        n = quality_episodes(len(returns), quality)
        r, s = returns[:n].astype(np.float64), episode_success[:n]
        stats[quality] = {
            "episodes": n,
            "steps": int(n * EPISODE_LENGTH),
            "return_mean": round(float(r.mean()), 2),
            "return_min": round(float(r.min()), 2),
            "return_max": round(float(r.max()), 2),
            "success_rate": round(float(s.mean()), 4),
        }
    return stats


ALONG_BINS = 10  # the buffer's tenths, in collection order


def along_buffer(returns: np.ndarray, episode_success: np.ndarray) -> dict[str, list[float]]:
    """Success rate and mean return of each tenth of a task's buffer, first to last: how the
    behaviour that filled it improved (sub-optimal is the first five tenths)."""
    bins = np.array_split(np.arange(len(returns)), min(ALONG_BINS, len(returns)))
    return {"success": [round(float(episode_success[b].mean()), 4) for b in bins],
            "return": [round(float(returns[b].mean()), 1) for b in bins]}


def along_table(card: Mapping[str, Any], fmt: str = "simple") -> str:
    """Success % per tenth of the buffer, one row per task (cards made before it: nothing)."""
    rows = [[task] + [100 * x for x in entry["along"]["success"]]
            for task, entry in card["tasks"].items() if "along" in entry]
    if not rows:
        return ""
    headers = ["success % by buffer tenth"] + [f"{i + 1}" for i in range(len(rows[0]) - 1)]
    return tabulate(rows, headers, tablefmt=fmt, floatfmt=".0f")


def read_card(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CARD_JSON
    if not path.is_file():
        raise DatasetError(f"{path}: no dataset card; is {directory} a dataset made by "
                           "'mtrl-bench data generate'?")
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT or "tasks" not in card:
        raise DatasetError(f"{path}: not a format-{CARD_FORMAT} dataset card")
    if not isinstance(card["tasks"], dict):
        raise DatasetError(f"{path}: 'tasks' is a {type(card['tasks']).__name__}, expected a "
                           "mapping of task name to its file entry")
    for key in ("episodes", "seed", "recipe", "versions"):
        if key not in card:
            raise DatasetError(f"{path}: the card lacks '{key}'")
    for task, entry in card["tasks"].items():
        lacking = [k for k in TASK_ENTRY_KEYS if not isinstance(entry, dict) or k not in entry]
        if lacking:
            raise DatasetError(f"{path}: task '{task}' lacks {', '.join(map(repr, lacking))}; "
                               "delete the card's entry (or the folder) to regenerate it")
    return card


def write_card(directory: Path, card: Mapping[str, Any]) -> None:
    """card.json, then the readable CARD.md, each atomically."""
    directory = Path(directory)
    ordered = dict(card)
    ordered["tasks"] = dict(sorted(card["tasks"].items(), key=lambda kv: _task_order(kv[0])))
    atomic_write(directory / CARD_JSON, json.dumps(ordered, indent=2) + "\n")
    atomic_write(directory / CARD_MD, render_card(ordered, directory, fmt="github") + "\n")


def _task_order(task: str) -> int:
    return MT50_ORDER.index(task) if task in MT50_ORDER else len(MT50_ORDER)


def card_table(card: Mapping[str, Any], fmt: str = "simple") -> str:
    """One row per task: return and success of both qualities beside the expert's success."""
    experts = load_experts()["tasks"]
    rows = []
    for task, entry in card["tasks"].items():
        near, sub = entry["stats"]["near-optimal"], entry["stats"]["sub-optimal"]
        expert = experts.get(task, {}).get("success")
        rows.append([task, near["episodes"], near["return_mean"], 100 * near["success_rate"],
                     sub["episodes"], sub["return_mean"], 100 * sub["success_rate"],
                     None if expert is None else 100 * expert])
    if rows:
        means = [float(np.mean([row[i] for row in rows])) for i in (2, 3, 5, 6)]
        known = [row[7] for row in rows if row[7] is not None]
        rows.append(["mean", "", means[0], means[1], "", means[2], means[3],
                     float(np.mean(known)) if known else None])
    headers = ["task", "near eps", "near return", "near success %", "sub eps", "sub return",
               "sub success %", "expert success %"]
    return tabulate(rows, headers, tablefmt=fmt, floatfmt=".1f", missingval="-")


def render_card(card: Mapping[str, Any], directory: Path, fmt: str = "simple") -> str:
    recipe = card["recipe"]
    params = "; ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else
                       f"{k} " + " ".join(f"{u:g}:{x:g}" for u, x in v)
                       for k, v in recipe.items() if k != "name")
    versions = ", ".join(f"{k} {v}" for k, v in card["versions"].items())
    sub = quality_episodes(card["episodes"], "sub-optimal")
    lines = [
        f"# Dataset {Path(directory).name}" if fmt == "github" else f"dataset  {directory}",
        "",
        f"- recipe: {recipe['name']} (u:value knots over the buffer; {params})",
        f"- seed {card['seed']}, {card['episodes']} episodes of {card['episode_length']} steps "
        f"per task, {card['goal_mode']} goals",
        f"- near-optimal = the whole buffer; sub-optimal = its first {sub} episodes",
        f"- versions: {versions}",
        f"- tasks: {len(card['tasks'])}",
        "",
        card_table(card, fmt),
    ]
    along = along_table(card, fmt)
    if along:
        lines += ["", along]
    return "\n".join(lines)
