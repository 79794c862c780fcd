"""A conformance kit for method plugins: `check_method("name")` or `check_method(spec)`.

In the spirit of d3rlpy's algorithm tester and pytest's `pytester`: it runs a method through the
real trainer at the smoke scale (on random Meta-World-shaped data, so no dataset is generated)
and checks what the trainer relies on:

1. the strategy factory builds masks of shape (tasks, maskable entries), float, finite, in [0, 1];
2. the same seed gives the same masks (the factory draws only from ``ctx.generator``);
3. masked training steps change the weights, with every mask update checked (shape, dtype, range,
   no NaN) and its diagnostics well formed (a float, or one float per task, per key). Training
   goes on, an update every `interval` steps, until the masks have changed `changes` times
   (default 2; at most `max_updates` updates), so a strategy that acts only every few updates
   (a voting window, a schedule) is checked on the updates where it acts; "masks never changed
   in N updates" otherwise (a method whose masks are meant to stay put passes with changes=0);
4. training is deterministic for a seed;
5. save/restore: a run checkpointed between the first two mask changes, saved with torch.save,
   loaded as every checkpoint is (tensors and plain containers only: nothing in a checkpoint may
   need unpickling code) and resumed, ends with the masks and weights of an uninterrupted run
   (so state beyond the masks, such as votes or a counter, must be in state_dict).

`config` overrides fields of the method's config (e.g. {"window": 5}). Each problem raises
`MethodCheckError` naming the method and what failed.

`ScriptedExpert` (Meta-World's scripted policies as an evaluation policy) checks the other end:
that evaluation scores a perfect policy as the experts' table says.
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from mtrl_bench.config import DataConfig, ModelConfig, build_config
from mtrl_bench.data import OfflineData
from mtrl_bench.masking import MaskError
from mtrl_bench.model import Segments
from mtrl_bench.plugins import MethodSpec, registry
from mtrl_bench.runs import load_plain
from mtrl_bench.trainer import NonFiniteLoss, Trainer

STEPS = 6  # training steps per check run, at least
INTERVAL = 2  # a mask update every INTERVAL steps
CHANGES = 2  # mask changes to see before the checks end
MAX_UPDATES = 40  # updates to wait for them
TASKS = 3


class MethodCheckError(AssertionError):
    """A method does not meet the plugin contract; the message says which part and why."""


def random_datasets(num_tasks: int = TASKS, episodes: int = 4, horizon: int = 50,
                    seed: int = 0) -> list[SimpleNamespace]:
    """Random arrays shaped like Meta-World episodes (39-dim states, 4-dim actions)."""
    rng = np.random.default_rng(seed)
    return [SimpleNamespace(
        task=f"task{i}", observations=rng.normal(size=(episodes, horizon, 39)).astype(np.float32),
        actions=rng.uniform(-1, 1, (episodes, horizon, 4)).astype(np.float32),
        rewards=rng.uniform(0, 10, (episodes, horizon)).astype(np.float32),
        successes=np.zeros((episodes, horizon), bool)) for i in range(num_tasks)]


@dataclass(frozen=True)
class _Setup:
    spec: MethodSpec
    data: OfflineData
    seed: int
    interval: int
    steps: int  # the longest a check run may take
    config: dict[str, Any]

    def trainer(self) -> Trainer:
        overrides = {"train.steps": self.steps, "train.mask_interval": self.interval,
                     "train.warmup_steps": 1, "train.lr": 1e-3,
                     **{f"method.{k}": v for k, v in self.config.items()}}
        cfg = build_config(self.spec.name, "mt5", "near-optimal", self.seed, "smoke", overrides,
                           method_config_cls=self.spec.config_cls)
        return Trainer(cfg, self.data, torch.device("cpu"), spec=self.spec)

    def run(self, steps: int, state: dict | None = None) -> tuple[Trainer, list[dict]]:
        """A trainer after `steps` steps (from `state`, if given), with its records."""
        trainer = self.trainer()
        if state is not None:
            trainer.load_state_dict(state)
        records = [trainer.step() for _ in range(steps - trainer.step_count)]
        return trainer, records

    def run_until_changes(self, changes: int) -> tuple[Trainer, list[dict], list[int]]:
        """Train until the masks changed `changes` times (and STEPS steps passed) or the longest
        run ended; returns the trainer, its records and the steps at which the masks changed."""
        trainer, records, changed = self.trainer(), [], []
        masks = None if trainer.strategy is None else trainer.strategy.masks.clone()
        while trainer.step_count < self.steps:
            records.append(trainer.step())
            if masks is not None and not torch.equal(masks, trainer.strategy.masks):
                changed.append(trainer.step_count)
                masks = trainer.strategy.masks.clone()
            if len(changed) >= changes and trainer.step_count >= STEPS:
                break
        return trainer, records, changed


def _check_diagnostics(name: str, records: list[dict], num_tasks: int) -> None:
    for record in records:
        diag = record.get("strategy")
        if diag is None:
            continue
        if not isinstance(diag, dict):
            raise MethodCheckError(f"method '{name}': update() returned "
                                   f"{type(diag).__name__}, expected a dict of diagnostics")
        for key, value in diag.items():
            per_task = isinstance(value, list) and len(value) == num_tasks and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            scalar = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not isinstance(key, str) or not (scalar or per_task):
                raise MethodCheckError(
                    f"method '{name}': diagnostic {key!r} at step {record['step']} is "
                    f"{value!r}; expected a float or a list of {num_tasks} floats (one per task)")


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.equal(a, b))


def check_method(method: str | MethodSpec, seed: int = 0, *, interval: int = INTERVAL,
                 changes: int = CHANGES, max_updates: int = MAX_UPDATES,
                 config: dict[str, Any] | None = None) -> None:
    """Run the conformance checks (module docstring) on a registered method or a MethodSpec;
    raises MethodCheckError naming the first problem."""
    spec = registry().method(method).spec if isinstance(method, str) else method
    name = spec.name
    try:
        spec.config_cls()
    except Exception as exc:
        raise MethodCheckError(f"method '{name}': its config_cls() fails with default values: "
                               f"{type(exc).__name__}: {exc}") from exc
    data = OfflineData(random_datasets(), *_smoke_sections())
    setup = _Setup(spec, data, seed, interval, max(STEPS, interval * max_updates),
                   dict(config or {}))
    try:
        first = setup.trainer()  # 1. masks checked at construction
        if spec.strategy is not None:
            again = setup.trainer()
            if not _same(first.strategy.masks, again.strategy.masks):  # 2.
                raise MethodCheckError(f"method '{name}': two strategies built with the same "
                                       "seed have different masks (draw only from ctx.generator)")
        # 3. every update checked by the trainer
        full, records, changed = setup.run_until_changes(changes)
        twin, twin_records = setup.run(full.step_count)  # 4.
        # 5. checkpointed between the first two changes: a window's votes are then half full
        half = (changed[0] + changed[1]) // 2 if len(changed) > 1 else full.step_count // 2
        half_run, _ = setup.run(half)
    except (MaskError, NonFiniteLoss) as exc:
        raise MethodCheckError(f"method '{name}': {exc}" if isinstance(exc, NonFiniteLoss)
                               else str(exc)) from exc
    moved = any(not torch.equal(p, q) for p, q in zip(first.model.parameters(),
                                                       full.model.parameters()))
    if not moved:
        raise MethodCheckError(f"method '{name}': {full.step_count} training steps left every "
                               "weight unchanged (does grad_scale() zero every entry?)")
    if spec.strategy is not None:
        if not any("strategy" in r for r in records):
            raise MethodCheckError(f"method '{name}': no mask update ran")
        _check_diagnostics(name, records, data.num_tasks)
        if len(changed) < changes:
            raise MethodCheckError(
                f"method '{name}': masks "
                + ("never changed" if not changed else f"changed only {len(changed)} time(s)")
                + f" in {full.step_count // interval} updates (one every {interval} steps); the "
                f"kit checks {changes} changes (a strategy that acts rarely: raise "
                "max_updates; masks meant to stay put: changes=0)")
    if [r["loss"] for r in twin_records] != [r["loss"] for r in records] or (
            spec.strategy is not None and not _same(twin.strategy.masks, full.strategy.masks)):
        raise MethodCheckError(f"method '{name}': two runs with seed {seed} differ "
                               "(losses or masks): the method is not deterministic")
    buffer = io.BytesIO()
    torch.save(half_run.state_dict(), buffer)
    buffer.seek(0)
    try:
        state = load_plain(buffer)
    except pickle.UnpicklingError as exc:
        raise MethodCheckError(f"method '{name}': checkpoint refused: {exc}; keep a strategy's "
                               "state_dict() to tensors and plain containers") from None
    try:
        resumed, _ = setup.run(full.step_count, state)
    except (MaskError, NonFiniteLoss) as exc:
        raise MethodCheckError(f"method '{name}' after save/restore: {exc}") from exc
    if spec.strategy is not None and not _same(resumed.strategy.masks, full.strategy.masks):
        raise MethodCheckError(
            f"method '{name}': masks after save/restore differ from an uninterrupted run: "
            "state beyond the masks (a running statistic, a counter) must be in "
            "state_dict() and load_state_dict()")
    if not all(torch.equal(p, q) for p, q in zip(resumed.model.parameters(),
                                                  full.model.parameters())):
        raise MethodCheckError(f"method '{name}': weights after save/restore differ from an "
                               "uninterrupted run")


class ScriptedExpert(nn.Module):
    """Meta-World's scripted policies as an evaluation `Policy`, to check the harness: the
    expert's success is what a perfect model would score. States are un-normalised with the
    data's statistics before the scripted policy sees them. `inner`, if given, is a real model
    run on the same inputs for its cost only (benchmarks with realistic episode ends)."""

    def __init__(self, data: OfflineData, inner: nn.Module | None = None) -> None:
        super().__init__()
        from metaworld.policies import ENV_POLICY_MAP

        self.policies = [ENV_POLICY_MAP[task]() for task in data.tasks]
        self.register_buffer("mean", torch.from_numpy(np.stack(data.state_mean)))
        self.register_buffer("std", torch.from_numpy(np.stack(data.state_std)))
        self.inner = inner

    def encode_prompt(self, prompt: Segments, tasks: torch.Tensor) -> Any:
        return None if self.inner is None else self.inner.encode_prompt(prompt, None)

    def act(self, seg: Segments, cache: Any, tasks: torch.Tensor) -> torch.Tensor:
        if self.inner is not None:
            self.inner.act(seg, cache, None)
        obs = seg.states[:, :, -1].double() * self.std[tasks, None] + self.mean[tasks, None]
        act = [[self.policies[k].get_action(o) for o in row]
               for k, row in zip(tasks.tolist(), obs.cpu().numpy())]
        return torch.as_tensor(np.array(act), dtype=seg.actions.dtype)  # (G, B, A)


def _smoke_sections() -> tuple[DataConfig, ModelConfig]:
    cfg = build_config("check", "mt5", "near-optimal", 0, "smoke")
    return cfg.data, cfg.model


__all__ = ["MethodCheckError", "ScriptedExpert", "check_method", "random_datasets"]
