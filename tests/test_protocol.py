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


def test_the_paper_profile_starts_checkpoints_resumes_and_evaluates(smoke_data, tmp_path):
    """The first GPU user must not find the first bug: the paper-scale model and trainer (with
    a masked method) for four steps on the smoke data, interrupted after two."""
    from mtrl_bench.api import Run

    overrides = {"data.episodes": 4, "train.steps": 4, "train.checkpoint_interval": 2,
                 "train.log_interval": 1, "train.mask_interval": 2,
                 "eval.episodes_per_task": 1}

    def run() -> Run:
        return Run.prepare("socodt", "mt5", "near-optimal", 0, "paper", overrides,
                           execution={"device": "cpu", "threads": 1, "progress": False,
                                      "data_dir": str(smoke_data)}, out=tmp_path / "paper")

    assert run().train(stop_after=2) is None
    assert run().dir.load_checkpoint()["step"] == 2
    result = run().train(resume=True)
    assert result is not None and run().complete and len(result["tasks"]) == 5
    records = run().dir.metrics()
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    assert "strategy" in records[1] and records[-1]["kind"] == "eval"
    assert run().config.model.embed_dim == 256 and run().config.model.context_len == 20
