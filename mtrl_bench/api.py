"""The programmatic entry points the CLI and the harness share: prepare, train, evaluate a run."""
from __future__ import annotations

from pathlib import Path

from mtrl_bench.config import RunConfig, build_config
from mtrl_bench.plugins import registry
from mtrl_bench.runs import RunDir, write_json


def prepare_run(method: str, suite: str, quality: str, seed: int, profile: str = "cpu",
                device: str = "auto", overrides: dict | None = None, out: Path | None = None,
                runs_root: Path = Path("runs")) -> tuple[RunConfig, RunDir]:
    """Validate names, resolve the config and pick the run directory (named by the config)."""
    from mtrl_bench.runs import run_name
    from mtrl_bench_envs.suites import get_suite

    spec = registry().method(method).spec
    get_suite(suite)
    cfg = build_config(method, suite, quality, seed, profile, device, overrides,
                       method_config_cls=spec.config_cls)
    return cfg, RunDir(out if out is not None else Path(runs_root) / run_name(cfg))


def load_datasets(cfg: RunConfig, data_dir: Path | None = None, progress: bool = True) -> list:
    """The run's datasets, generated first if missing."""
    from mtrl_bench_envs.dataset import ensure_dataset, load_dataset
    from mtrl_bench_envs.suites import get_suite

    suite = get_suite(cfg.suite)
    directory = ensure_dataset(suite, cfg.data.episodes, cfg.data.data_seed, root=data_dir,
                               progress=progress, recipe=cfg.data.recipe)
    return load_dataset(directory, suite.tasks, cfg.quality)


def run_training(cfg: RunConfig, run: RunDir, resume: bool = False, data_dir: Path | None = None,
                 progress: bool = True, stop_after: int | None = None) -> dict | None:
    from mtrl_bench.trainer import train

    return train(cfg, run, load_datasets(cfg, data_dir, progress), resume=resume,
                 progress=progress, stop_after=stop_after)


def evaluate_run(path: Path, episodes: int | None = None, data_dir: Path | None = None,
                 progress: bool = True) -> dict:
    """Re-evaluate a run's last checkpoint; writes eval_<episodes>.json beside eval.json."""
    from mtrl_bench.data import OfflineData
    from mtrl_bench.evaluation import evaluate
    from mtrl_bench.trainer import (
        build,
        effective_weights,
        resolve_amp,
        resolve_device,
        restore,
    )
    from mtrl_bench_envs.suites import get_suite

    run = RunDir(path)
    cfg = run.config()
    state = run.load_checkpoint()
    if state is None:
        raise FileNotFoundError(f"{run.path} has no checkpoint to evaluate")
    if episodes is not None:
        if episodes <= 0:
            raise ValueError(f"--episodes must be positive, got {episodes}")
        cfg.eval.episodes_per_task = episodes
    device = resolve_device(cfg.device)
    data = OfflineData(load_datasets(cfg, data_dir, progress), cfg.data, cfg.model)
    c = build(cfg, data, device)
    restore(c, state)
    result = evaluate(c.model, data, get_suite(cfg.suite), cfg.eval,
                      weights=effective_weights(c, False), device=device,
                      amp_dtype=resolve_amp(cfg.train.amp, device), progress=progress)
    result["step"] = state["step"]
    write_json(run.path / f"eval_{cfg.eval.episodes_per_task}.json", result)
    return result
