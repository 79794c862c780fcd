"""A Run: one training run's identity, its execution settings and its directory, end to end.

The CLI and the harness share this: `Run.prepare` resolves a config and finds the run's
directory (named by the identity only), `Run.train` creates or resumes that directory, drives the
`Trainer` (which only trains), logs, checkpoints, evaluates and stores; `Run.evaluate` scores a
stored checkpoint again.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtrl_bench.config import (
    Execution,
    RunConfig,
    build_config,
    build_execution,
    config_diff,
    split_overrides,
)
from mtrl_bench.plugins import registry
from mtrl_bench.progress import ProgressRecord
from mtrl_bench.runs import RunDir, RunFileError, rounded, run_name, write_json
from mtrl_bench.tensorboard import BoardLog


class ConfigMismatch(ValueError):
    """A run directory or checkpoint holds a different config than the one asked for."""


class RunLocked(RuntimeError):
    """Another live process holds the run's lock."""


@functools.cache  # read once per process: `run` asks for every run of a grid
def method_fingerprint(method: str) -> dict[str, str]:
    """Which code a method's results come from: its distribution, version and a hash of the
    module that defines it (a changed plugin makes stored results stale; `Run.stale_code`)."""
    import hashlib
    import inspect

    loaded = registry().method(method)
    try:
        source = inspect.getsourcefile(loaded.spec.config_cls) or ""
        digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()[:12]
    except (TypeError, OSError):
        digest = "unknown"
    return {"name": method, "distribution": loaded.distribution, "version": loaded.version,
            "source_sha256": digest}


def load_datasets(cfg: RunConfig, data_dir: str | Path | None = None,
                  progress: bool = True) -> list:
    """The run's datasets: the suite's own (generated first if missing) or Minari's."""
    from mtrl_bench.config import GENERATED
    from mtrl_bench_envs.dataset import ensure_dataset, load_dataset
    from mtrl_bench_envs.suites import get_suite

    suite = get_suite(cfg.suite)
    if cfg.data.source != GENERATED:
        from mtrl_bench_envs.minari_format import load_minari

        return load_minari(cfg.data.source, suite.tasks, cfg.quality)
    directory = ensure_dataset(suite, cfg.data.episodes, cfg.data.data_seed,
                               root=Path(data_dir) if data_dir else None, progress=progress,
                               recipe=cfg.data.recipe)
    return load_dataset(directory, suite.tasks, cfg.quality)


def data_identity(cfg: RunConfig) -> dict:
    """What identifies a run's data beyond its config, for the manifest and the checkpoint (a
    resume on other data is refused): for Minari datasets, their folder, ids and a hash of their
    files; nothing for the suite's own (checked against their card's checksums when loaded)."""
    from mtrl_bench.config import GENERATED

    if cfg.data.source == GENERATED:
        return {}
    from mtrl_bench_envs.minari_format import minari_identity
    from mtrl_bench_envs.suites import get_suite

    return {"minari": minari_identity(cfg.data.source, get_suite(cfg.suite).tasks)}


def remove_empty_folders(path: Path, up_to: Path) -> None:
    """Remove `path`, then its parents up to `up_to`, while each is empty. A folder that holds
    anything (another run that started meanwhile, a user's file) stops it: a command removes only
    folders it made and nobody else wrote into, never a shared runs root with another run."""
    path, up_to = Path(path).absolute(), Path(up_to).absolute()
    while path == up_to or up_to in path.parents:
        try:
            path.rmdir()  # atomic: fails on a folder that is not empty
        except OSError:
            return
        path = path.parent


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (None if `path` exists)."""
    path = Path(path).absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


@dataclass
class Run:
    """One run: what it is (config), how it executes (execution) and where it lives (dir)."""

    config: RunConfig  # identity: hashed into the directory name
    execution: Execution  # how: recorded in the manifest, never hashed
    dir: RunDir
    _board = None  # while training: the TensorBoard view of the metrics log (not a field)
    _pool = None  # while training: the envs its evaluations share

    # -- finding runs ----------------------------------------------------------------------------
    @classmethod
    def prepare(cls, method: str, suite: str, quality: str, seed: int, profile: str = "cpu",
                overrides: dict[str, Any] | None = None,
                execution: dict[str, Any] | Execution | None = None, out: Path | None = None,
                runs_root: Path = Path("runs")) -> Run:
        """Validate names, resolve the config and execution, and find the run's directory.

        `overrides` may mix config fields and execution settings (`execution.threads`, or the
        aliases `train.threads`, `train.amp`, `device`); only the config fields name the run.
        """
        from mtrl_bench_envs.suites import get_suite

        spec = registry().method(method).spec
        get_suite(suite)
        config_overrides, settings = split_overrides(overrides or {})
        cfg = build_config(method, suite, quality, seed, profile, config_overrides,
                           method_config_cls=spec.config_cls)
        if isinstance(execution, Execution):
            ex = execution.with_settings(**settings)
        else:
            ex = build_execution(profile, {**(execution or {}), **settings})
        path = out if out is not None else Path(runs_root) / run_name(cfg)
        return cls(cfg, ex, RunDir(path))

    @classmethod
    def open(cls, path: Path, execution: Execution | None = None) -> Run:
        """An existing run directory (its config.json), with these execution settings."""
        run_dir = RunDir(Path(path))
        cfg = run_dir.config()
        return cls(cfg, execution or build_execution(cfg.profile), run_dir)

    @property
    def complete(self) -> bool:
        return self.dir.complete

    def stale_code(self) -> str | None:
        """Why a stored result may not match the installed method's code (its plugin's version
        or source changed since it was trained), or None."""
        if not self.dir.manifest_path.exists():
            return None
        from mtrl_bench.runs import read_json

        then = read_json(self.dir.manifest_path).get("method")
        if not then or self.config.method not in registry().methods:
            return None
        now = method_fingerprint(self.config.method)
        changed = [f"{k} {then.get(k)} -> {now[k]}" for k in ("version", "source_sha256")
                   if then.get(k) != now[k]]
        if not changed:
            return None
        return (f"{self.dir.path} was trained with another version of method "
                f"'{self.config.method}' from '{now['distribution']}' ({'; '.join(changed)}); "
                f"delete that directory to retrain it with the installed code")

    def _check_identity(self, state: dict | None) -> None:
        """The directory's config.json and the checkpoint's config must be this run's."""
        from mtrl_bench.runs import read_json

        want = self.config.to_dict()
        sources = []
        if self.dir.config_path.exists():
            sources.append((self.dir.config_path.name, read_json(self.dir.config_path)))
        if state is not None:
            sources.append(("its checkpoint", state["config"]))
        for where, raw in sources:
            try:
                saved = RunConfig.from_dict(raw).to_dict()
            except (TypeError, ValueError, AttributeError) as exc:
                raise ConfigMismatch(f"{self.dir.path}: {where} is not a run config ({exc})"
                                     ) from None
            diff = config_diff(saved, want)
            if diff:
                raise ConfigMismatch(f"{self.dir.path} holds another run ({where}: "
                                     + "; ".join(diff) + "); use another --out, or delete it")

    # -- training --------------------------------------------------------------------------------
    def _eval_workers(self) -> int:
        """Processes stepping evaluation envs: as set, else the run's torch threads (set by
        `_setup`)."""
        import torch

        return self.execution.eval_workers or torch.get_num_threads()

    def _setup(self) -> tuple[Any, Any, Any]:
        """(device, autocast dtype, OfflineData) for this run's execution settings."""
        import torch

        from mtrl_bench.data import OfflineData
        from mtrl_bench.trainer import keep_freed_memory, resolve_amp, resolve_device

        device = resolve_device(self.execution.device)
        torch.set_num_threads(self.execution.threads or os.cpu_count() or 1)
        keep_freed_memory()
        data = OfflineData(load_datasets(self.config, self.execution.data_dir,
                                         self.execution.progress),
                           self.config.data, self.config.model)
        return device, resolve_amp(self.execution.amp, device), data

    def train(self, resume: bool = False, stop_after: int | None = None) -> dict | None:
        """Train (or resume) to completion and evaluate; returns the final evaluation.

        Holds the run's lock throughout (RunLocked if another live process has it). A run that
        another process finished meanwhile returns its stored evaluation. Without a checkpoint
        the run starts from step 0 and any metrics of an earlier attempt are dropped.
        stop_after: leave after that many steps, as an interruption would (for tests).
        """
        from mtrl_bench.runlock import RunLock
        from mtrl_bench.runs import read_json

        created = _first_missing(self.dir.path)  # removed again if the run never begins
        lock = RunLock(self.dir.path)
        if not lock.acquire():
            holder = lock.holder() or {}
            raise RunLocked(f"{self.dir.path} is being trained by pid {holder.get('pid')} on "
                            f"{holder.get('host')} (delete {lock.path} if that process is gone)")
        try:
            if self.dir.complete:
                return read_json(self.dir.eval_path)
            self.dir.clean_temporary_files()
            return self._train_locked(resume, stop_after, ProgressRecord(self.dir.progress_path,
                                                                         self.config))
        except KeyboardInterrupt:
            if self.dir.config_path.exists() and not self.dir.complete:
                self.dir.set_status("interrupted")
            raise
        except (ConfigMismatch, RunLocked):
            raise  # nothing of this run was touched
        except Exception as exc:
            failed = self.dir.status_path.exists() and self.dir.status().get("state") == "failed"
            if self.dir.config_path.exists() and not self.dir.complete and not failed:
                self.dir.set_status("failed", error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        finally:
            self.dir.progress_path.unlink(missing_ok=True)  # only while it trains
            lock.release()
            if created is not None and not self.dir.config_path.exists():  # failed before it
                remove_empty_folders(self.dir.path, created)  # began: only what it made, empty

    def _train_locked(self, resume: bool, stop_after: int | None,
                      progress: ProgressRecord) -> dict | None:
        import torch

        from mtrl_bench.trainer import Trainer
        from mtrl_bench_envs.pool import EnvPool

        cfg, ex, run = self.config, self.execution, self.dir
        state = run.load_checkpoint() if resume else None
        if resume and state is None and run.config_path.exists():
            logged = max((r.get("step", 0) for r in run.metrics()), default=0)
            if logged:  # starting over would silently drop them: say so, change nothing
                raise RunFileError(
                    f"{run.checkpoint_path}: missing, so --resume cannot continue "
                    f"{run.path.name} (its metrics reach step {logged}); train without "
                    "--resume into a new --out, or delete the folder to start it over")
        self._check_identity(state)
        progress.phase("data", int(state["step"]) if state else 0)
        setup_start = time.time()
        device, amp, data = self._setup()
        data_id = data_identity(cfg)
        data_sha256 = data_id.get("minari", {}).get("sha256")
        if state is not None and state.get("data_sha256") != data_sha256:
            raise ConfigMismatch(f"{run.checkpoint_path}: trained on data with sha256 "
                                 f"{state.get('data_sha256')}, {cfg.data.source} holds "
                                 f"{data_sha256} now; restore that data, or train into another "
                                 "--out")
        setup_seconds = round(time.time() - setup_start, 1)  # mostly loading the data
        trainer = Trainer(cfg, data, device, amp)
        start, seconds_before = 0, 0.0
        if state is not None:
            start = trainer.load_state_dict(state)
            seconds_before = float(state.get("train_seconds", 0.0))
        if not run.config_path.exists():
            run.create(cfg, registry().distributions(), method_fingerprint(cfg.method))
        run.record_execution(ex, device=str(device), amp=str(amp).removeprefix("torch."),
                             threads=torch.get_num_threads(),  # what ran, not "0 = default"
                             eval_workers=self._eval_workers(), resumed_at=start,
                             setup_seconds=setup_seconds, **data_id)
        # (recorded first: a damaged manifest stops the run before any edit)
        run.truncate_metrics(start)  # records after the checkpoint (or all, from step 0)
        run.set_status("running", step=start)
        board = self._board = BoardLog(run.path, start) if ex.tensorboard else None
        # one pool for the run: its evaluations reuse the envs (and the worker processes)
        self._pool = EnvPool(self._eval_workers())
        try:
            return self._train_steps(trainer, data, device, amp, start, seconds_before,
                                     stop_after, progress, data_sha256)
        finally:
            if board is not None:
                board.close()
            self._pool.close()
            self._board = self._pool = None

    def _log(self, record: dict) -> None:
        self.dir.log(record)
        if self._board is not None:
            self._board.write(record)

    def _train_steps(self, trainer: Any, data: Any, device: Any, amp: Any, start: int,
                     seconds_before: float, stop_after: int | None,
                     progress: ProgressRecord, data_sha256: str | None) -> dict | None:
        from tqdm.auto import tqdm

        cfg, ex, run = self.config, self.execution, self.dir
        progress.phase("training", start)

        t, total = cfg.train, cfg.train.steps
        data_record = {"data_sha256": data_sha256} if data_sha256 else {}  # checked on resume
        t0 = time.time()

        def elapsed() -> float:
            return seconds_before + time.time() - t0

        bar = tqdm(total=total, initial=start, desc=f"train {cfg.method}", disable=not ex.progress,
                   dynamic_ncols=True)
        while trainer.step_count < total:
            try:
                record = trainer.step()  # NonFiniteLoss, MaskError (naming the method), ...
            except Exception as exc:
                bar.close()
                run.set_status("failed", step=trainer.step_count + 1,
                               error=f"{type(exc).__name__}: {exc}"[:2000])
                raise
            step = trainer.step_count
            bar.update(1)
            progress.step(step)
            if step % t.log_interval == 0 or "mask" in record:
                self._log(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
            done = step == total
            if t.eval_interval and step % t.eval_interval == 0 and not done:
                progress.phase("curve evaluation", step)
                self._evaluate_and_log(trainer, data, device, amp)
                progress.phase("training", step)
            if step % t.checkpoint_interval == 0 or done:  # after logging: resumable
                run.save_checkpoint({**trainer.state_dict(), "config": cfg.to_dict(),
                                     "train_seconds": elapsed(), **data_record})
            if stop_after is not None and step - start >= stop_after and not done:
                bar.close()
                run.set_status("interrupted", step=step)
                return None
        bar.close()
        train_seconds = elapsed()
        progress.phase("final evaluation", total)
        result = self._evaluate_and_log(trainer, data, device, amp)
        result["train_seconds"] = train_seconds
        write_json(run.eval_path, rounded(result), compact=True)
        run.mark_complete()
        return result

    def _evaluate_and_log(self, trainer: Any, data: Any, device: Any, amp: Any) -> dict:
        """Evaluate the trainer's current policy; a curve point before the last step uses
        `eval.curve_episodes_per_task` episodes when set."""
        from mtrl_bench.evaluation import evaluate
        from mtrl_bench_envs.suites import get_suite

        cfg, step = self.config, trainer.step_count
        eval_cfg = cfg.eval
        if step < cfg.train.steps and eval_cfg.curve_episodes_per_task:
            eval_cfg = dataclasses.replace(eval_cfg,
                                           episodes_per_task=eval_cfg.curve_episodes_per_task)
        result = evaluate(trainer.model, data, get_suite(cfg.suite), eval_cfg,
                          weights=trainer.effective_weights(), device=device, amp_dtype=amp,
                          progress=self.execution.progress, pool=self._pool)
        self._log({"step": step, "kind": "eval", "success": result["success"],
                   "return": result["return"], "episodes_per_task": eval_cfg.episodes_per_task,
                   "seconds": round(result["seconds"], 1),  # the run's cost split
                   "task_success": [result["tasks"][t]["success"] for t in data.tasks]})
        return result

    # -- evaluating a stored run ---------------------------------------------------------------
    def evaluate(self, episodes: int | None = None) -> dict:
        """Score the run's last checkpoint again; writes eval_<episodes>.json beside eval.json."""
        from mtrl_bench.evaluation import evaluate
        from mtrl_bench.trainer import Trainer
        from mtrl_bench_envs.suites import get_suite

        state = self.dir.load_checkpoint()
        if state is None:
            raise FileNotFoundError(f"{self.dir.path} has no checkpoint to evaluate")
        eval_cfg = self.config.eval
        if episodes is not None:
            if episodes <= 0:
                raise ValueError(f"--episodes must be positive, got {episodes}")
            eval_cfg = dataclasses.replace(eval_cfg, episodes_per_task=episodes)
        device, amp, data = self._setup()
        trainer = Trainer(self.config, data, device, amp)
        try:
            trainer.load_state_dict(state)
        except RuntimeError as exc:  # PyTorch's many-line size-mismatch report
            first = next((x.strip() for x in str(exc).splitlines() if "size mismatch" in x
                          or "Missing key" in x or "Unexpected key" in x), str(exc)[:200])
            raise RunFileError(f"{self.dir.config_path}: the model it describes does not fit "
                               f"the checkpoint ({first.rstrip('.')}); was config.json edited?"
                               ) from None
        from mtrl_bench_envs.pool import EnvPool

        with EnvPool(self._eval_workers()) as pool:
            result = evaluate(trainer.model, data, get_suite(self.config.suite), eval_cfg,
                              weights=trainer.effective_weights(), device=device, amp_dtype=amp,
                              progress=self.execution.progress, pool=pool)
        result["step"] = state["step"]
        write_json(self.dir.path / f"eval_{eval_cfg.episodes_per_task}.json", rounded(result),
                   compact=True)
        return result
