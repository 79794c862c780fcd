"""Fingerprint of a masked training run's arithmetic: did a change alter the numerics?

Trains each listed method for a few hundred steps (cpu profile, random data shaped like
Meta-World's, so no dataset is needed) with its mask updates, and prints one SHA-256 over the
final parameters and masks per method. Run it on two trees (before and after a change meant to be
a pure speed-up) and compare the lines: equal hashes mean every parameter and every mask entry is
the same bit for bit.

    python tools/check_numerics.py [--methods socodt harmodt-f] [--tasks 5] [--steps 300] [--bf16]
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_trainer import fake_datasets  # noqa: E402

from mtrl_bench.config import build_config  # noqa: E402
from mtrl_bench.data import OfflineData  # noqa: E402
from mtrl_bench.trainer import Trainer  # noqa: E402


def fingerprint(method: str, tasks: int, steps: int, interval: int, bf16: bool) -> str:
    cfg = build_config(method, "mt5", "near-optimal", 0, "cpu")
    cfg.train.steps, cfg.train.mask_interval = steps, interval
    trainer = Trainer(cfg, OfflineData(fake_datasets(tasks), cfg.data, cfg.model),
                      torch.device("cpu"), torch.bfloat16 if bf16 else None)
    for _ in range(steps):
        trainer.step()
    digest = hashlib.sha256()
    for tensor in [*trainer.model.state_dict().values(),
                   *([trainer.strategy.masks] if trainer.strategy else [])]:
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["socodt", "harmodt-f", "prompt-dt"])
    ap.add_argument("--tasks", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--mask-interval", type=int, default=30)
    ap.add_argument("--bf16", action="store_true", help="under bf16 autocast")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for method in args.methods:
        digest = fingerprint(method, args.tasks, args.steps, args.mask_interval, args.bf16)
        print(method, digest, flush=True)


if __name__ == "__main__":
    main()
