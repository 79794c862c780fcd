"""The training protocol's knobs: learning-rate schedule, timestep-embedding init, data recipe."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from mtrl_bench.config import ConfigError, ModelConfig, RunConfig, build_config
from mtrl_bench.model import PromptDT
from mtrl_bench.trainer import lr_factor


def schedule(kind: str, steps: int = 10, warmup: int = 2) -> list[float]:
    f = lr_factor(SimpleNamespace(lr_schedule=kind, steps=steps, warmup_steps=warmup))
    return [f(s) for s in range(steps)]


def test_constant_schedule_is_the_reference_warm_up():
    assert schedule("constant") == [0.5] + [1.0] * 9


def test_cosine_schedule_warms_up_then_decays_to_zero():
    # after step s (0-based) the factor is for step s + 1: warm-up 1/2, then
    # 0.5 * (1 + cos(pi * (s + 1 - 2) / 8)) for s + 1 = 2 .. 10
    want = [0.5] + [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(9)]
    assert schedule("cosine") == pytest.approx(want)
    assert schedule("cosine")[-1] == pytest.approx(0.0)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="cosine"):
        schedule("linear")


def test_timestep_init():
    def std(init: str) -> float:
        torch.manual_seed(0)
        model = PromptDT(ModelConfig(embed_dim=32, n_layer=1, n_head=2, timestep_init=init), 39, 4)
        return model.embed_timestep.weight.std().item()

    assert std("torch") == pytest.approx(1.0, abs=0.02)  # PyTorch's N(0, 1), the reference
    assert std("gpt2") == pytest.approx(0.02, abs=0.001)
    with pytest.raises(ValueError, match="gpt2"):
        std("xavier")


def test_profiles_label_the_protocol():
    cpu = build_config("prompt-dt", "mt5", "near-optimal", 0, "cpu")
    paper = build_config("prompt-dt", "mt5", "near-optimal", 0, "paper")
    assert cpu.data.recipe == paper.data.recipe == "scripted-replay-v2"
    assert paper.model.timestep_init == "torch" and paper.train.lr_schedule == "constant"
    assert paper.train.lr == 1e-4  # the reference code's


def test_configs_from_before_recipes_read_as_v1():
    old = RunConfig("prompt-dt").to_dict()
    del old["data"]["recipe"]
    assert RunConfig.from_dict(old).data.recipe == "scripted-replay-v1"
    with pytest.raises(ConfigError, match="expects"):
        build_config("prompt-dt", "mt5", "near-optimal", 0, "cpu",
                     overrides={"train.lr": "fast"})
