"""The plugin conformance kit: it passes every built-in method and fails, naming the problem,
for strategies that break the contract."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mtrl_bench.masking import MaskStrategy, StrategyContext, UpdateContext, erk_initialised
from mtrl_bench.plugins import MethodSpec, registry
from mtrl_bench.testing import MethodCheckError, check_method

BUILT_IN = ["prompt-dt", "mtdt", "mtbc", "harmodt-f", "harmodt-m", "harmodt-r", "socodt",
            "socodt-no-soft", "socodt-fixed-sparsity", "socodt-no-magnitude"]


@pytest.mark.parametrize("name", BUILT_IN)
def test_built_in_methods_conform(name):
    assert name in registry().methods
    check_method(name, changes=0 if name == "harmodt-r" else 2)  # HarmoDT-R's never move


def test_masks_that_never_move_are_said_unless_meant():
    with pytest.raises(MethodCheckError, match=r"'harmodt-r': masks never changed in 40 updates"):
        check_method("harmodt-r")


@dataclasses.dataclass(frozen=True)
class WindowCfg:
    sparsity: float = 0.2
    window: int = 5


class VotingWindow(MaskStrategy):
    """Votes every update; acts (re-masks) only on every `window`-th update: a strategy the
    kit must train long enough to see act. `bug` breaks it only when it acts."""

    bug = ""

    def __init__(self, config: WindowCfg, masks: torch.Tensor) -> None:
        super().__init__(masks)
        self.window, self.votes, self.count = config.window, torch.zeros_like(masks), 0

    def update(self, ctx: UpdateContext) -> dict:
        self.votes += (ctx.grads * ctx.params > 0).float()
        self.count += 1
        if self.count % self.window == 0:
            keep = self.votes >= self.votes.median(dim=1, keepdim=True).values
            self.masks.copy_(keep.float())
            if self.bug == "nan":
                self.masks[0, 0] = float("nan")
            if self.bug == "shape":
                self.masks = self.masks[:, 1:]
        return {"votes": float(self.votes.mean())}

    def state_dict(self) -> dict:
        extra = {} if self.bug == "state" else {"votes": self.votes, "count": self.count}
        return {**super().state_dict(), **extra}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.votes = state.get("votes", torch.zeros_like(self.masks))
        self.count = state.get("count", 0)


@pytest.mark.parametrize("bug, match", [
    ("", None),
    ("nan", r"update at step 10.*non-finite"),
    ("shape", r"update at step 10.*shape"),
    ("state", r"state_dict"),
])
def test_a_strategy_acting_every_fifth_update_is_checked_where_it_acts(bug, match):
    strategy = type("Window", (VotingWindow,), {"bug": bug})
    method = MethodSpec("voting", WindowCfg, erk_initialised(strategy), "a voting window")
    if match is None:
        check_method(method)
        check_method(method, config={"window": 3}, interval=3)  # overrides reach the method
    else:
        with pytest.raises(MethodCheckError, match=match):
            check_method(method)


@dataclasses.dataclass(frozen=True)
class Cfg:
    sparsity: float = 0.2


class RunningFisher(MaskStrategy):
    """Masks the entries whose running mean of g² is largest for a task: its running statistic
    is state beyond the masks, so it must be checkpointed."""

    save_statistic = True

    def __init__(self, config: Cfg, masks: torch.Tensor) -> None:
        super().__init__(masks)
        self.ema: torch.Tensor | None = None

    def update(self, ctx: UpdateContext) -> dict:
        g2 = ctx.grads.square()
        self.ema = g2 if self.ema is None else 0.5 * self.ema + 0.5 * g2
        cut = self.ema.quantile(0.8, dim=1, keepdim=True)
        self.masks.copy_((self.ema <= cut).float())
        return {"ema_mean": self.ema.mean(1).tolist()}

    def state_dict(self) -> dict:
        extra = {"ema": self.ema} if self.save_statistic else {}
        return {**super().state_dict(), **extra}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.ema = state.get("ema")


class ForgetfulFisher(RunningFisher):
    save_statistic = False  # the bug check_method exists to catch


def spec(strategy, name="under-test") -> MethodSpec:
    return MethodSpec(name, Cfg, strategy, "a strategy under test")


def test_masks_work_over_task_id_conditioning():
    """Conditioning and masks are orthogonal: HarmoDT's masks on the task-ID transformer."""
    from mtrl_bench_methods.harmodt import HarmoDTConfig, HarmoDTStrategy

    check_method(MethodSpec("harmodt-taskid", HarmoDTConfig, erk_initialised(HarmoDTStrategy),
                            "HarmoDT-F masks over task-ID conditioning",
                            conditioning="task-id"))


def test_a_strategy_with_a_running_statistic_resumes_exactly():
    check_method(spec(erk_initialised(RunningFisher)))


def test_a_statistic_left_out_of_the_checkpoint_is_caught():
    with pytest.raises(MethodCheckError, match="state_dict"):
        check_method(spec(erk_initialised(ForgetfulFisher)))


def test_wrong_shaped_masks_are_named():
    def wrong(ctx: StrategyContext) -> MaskStrategy:
        return MaskStrategy(torch.ones(ctx.num_tasks, ctx.layout.numel - 1))

    with pytest.raises(MethodCheckError, match=r"'under-test'.*construction.*shape"):
        check_method(spec(wrong))


class WritesNaN(MaskStrategy):
    def update(self, ctx: UpdateContext) -> dict:
        self.masks[0, :3] = float("nan")
        return {}


def test_an_update_that_writes_nan_is_named():
    with pytest.raises(MethodCheckError, match=r"'under-test'.*update at step 2.*non-finite"):
        check_method(spec(lambda ctx: WritesNaN(torch.ones(ctx.num_tasks, ctx.layout.numel))))


class OutOfRange(MaskStrategy):
    def update(self, ctx: UpdateContext) -> dict:
        self.masks.mul_(2.0)
        return {}


def test_masks_out_of_range_and_bad_diagnostics_are_named():
    with pytest.raises(MethodCheckError, match=r"\[0, 1\]"):
        check_method(spec(lambda ctx: OutOfRange(torch.ones(ctx.num_tasks, ctx.layout.numel))))

    class BadDiag(MaskStrategy):
        def update(self, ctx):
            return {"sizes": [1.0, 2.0]}  # two values for three tasks

    with pytest.raises(MethodCheckError, match="'sizes'.*one per task"):
        check_method(spec(lambda ctx: BadDiag(torch.ones(ctx.num_tasks, ctx.layout.numel))))


def test_a_factory_that_ignores_the_generator_is_not_deterministic():
    def unseeded(ctx: StrategyContext) -> MaskStrategy:
        draw = np.random.default_rng().random((ctx.num_tasks, ctx.layout.numel))  # fresh entropy
        return MaskStrategy(torch.from_numpy(draw < 0.8).float())

    with pytest.raises(MethodCheckError, match="same seed"):
        check_method(spec(unseeded))
