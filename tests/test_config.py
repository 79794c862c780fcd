"""Config resolution: profiles, typed overrides, round trips, clear errors."""
from __future__ import annotations

import dataclasses
import json
import sys
import types

import pytest

from mtrl_bench.config import (
    PROFILES,
    ConfigError,
    RunConfig,
    build_config,
    config_diff,
    load_profile,
)


@dataclasses.dataclass
class _MethodCfg:
    alpha: float = 20.0
    steps: int = 3


def test_profile_values_override_defaults():
    cfg = build_config("prompt-dt", "mt5", "near-optimal", 0, "paper")
    assert (cfg.model.embed_dim, cfg.model.n_layer, cfg.model.n_head) == (256, 6, 8)
    assert (cfg.model.context_len, cfg.model.prompt_len) == (20, 5)


def test_profiles_hold_only_scale_sections():
    for name in PROFILES:
        assert set(load_profile(name)) <= {"model", "data", "train", "eval", "execution"}, name


def test_overrides_are_typed_and_parsed():
    cfg = build_config("m", "mt5", "sub-optimal", 1, "smoke",
                       overrides={"train.steps": "7", "train.lr": "3e-4",
                                  "eval.early_stop": "false", "method.alpha": "5"},
                       method_config_cls=_MethodCfg)
    assert cfg.train.steps == 7 and cfg.train.lr == 3e-4 and cfg.eval.early_stop is False
    assert cfg.method_config == {"alpha": 5.0, "steps": 3}


@pytest.mark.parametrize("override, message", [
    ({"train.steps": "many"}, "'train.steps' expects int"),
    ({"train.steps": "1.5"}, "'train.steps' expects int"),
    ({"eval.early_stop": "3"}, "'eval.early_stop' expects bool"),
    ({"train.stepz": "3"}, "unknown field 'train.stepz'"),
    ({"steps": "3"}, "must look like section.field"),
    ({"method.beta": "1"}, "unknown field 'method.beta'"),
])
def test_bad_overrides_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        build_config("m", "mt5", "near-optimal", 0, "smoke", overrides=override,
                     method_config_cls=_MethodCfg)


def test_unknown_profile_and_quality_suggest():
    with pytest.raises(ConfigError, match="Did you mean 'smoke'"):
        build_config("m", "mt5", "near-optimal", 0, "smok")
    with pytest.raises(ConfigError, match="Did you mean 'sub-optimal'"):
        build_config("m", "mt5", "suboptimal", 0, "smoke")


def test_round_trip_and_diff():
    cfg = build_config("m", "mt5", "near-optimal", 3, "cpu", method_config_cls=_MethodCfg)
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg
    other = build_config("m", "mt5", "near-optimal", 3, "cpu", overrides={"train.lr": "0.1"},
                         method_config_cls=_MethodCfg)
    assert config_diff(cfg.to_dict(), other.to_dict()) == ["train.lr: 0.001 != 0.1"]


# A plugin's config written without `from __future__ import annotations`: real types, not strings.
PLUGIN_CONFIG = '''
from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    alpha: float = 1.0
    soft: bool = False
    window: int = 3
    label: str = "x"

    def __post_init__(self):
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
'''


@pytest.fixture
def plugin_config(monkeypatch):
    module = types.ModuleType("a_plugin")
    monkeypatch.setitem(sys.modules, "a_plugin", module)
    exec(compile(PLUGIN_CONFIG, "a_plugin.py", "exec"), module.__dict__)
    return module.Config


def test_overrides_of_a_plugin_config_without_postponed_annotations(plugin_config):
    def build(**overrides):
        return build_config("prompt-dt", "mt5", "near-optimal", 0, "smoke",
                            {f"method.{k}": v for k, v in overrides.items()},
                            method_config_cls=plugin_config).method_config

    got = build(alpha="10", soft="True", window="5", label="y")
    assert got == {"alpha": 10.0, "soft": True, "window": 5, "label": "y"}
    assert isinstance(got["alpha"], float)  # 10 and 10.0 would name different runs
    with pytest.raises(ConfigError, match=r"'method.alpha' expects float, got 'x'"):
        build(alpha="x")
    with pytest.raises(ConfigError, match=r"'method.soft' expects bool"):
        build(soft="yes")
    with pytest.raises(ConfigError, match=r"method 'prompt-dt' \(method.window='0'\): window "
                                          r"must be >= 1, got 0"):
        build(window="0")
    with pytest.raises(ConfigError, match=r"unknown field 'method.windw'. Did you mean "
                                          r"'method.window'\?"):
        build(windw="2")


def test_the_default_source_keeps_existing_run_names(tmp_path):
    """Left out of the identity wherever a config is written (config.json, grid.json, BC
    reference protocols), so files written before and after the field agree."""
    from conftest import TWO_SEEDS

    from mtrl_bench import grid
    from mtrl_bench.baselines import matching_references, reference_protocol

    assert "source" not in RunConfig("prompt-dt").to_dict()["data"]
    (tmp_path / "g.toml").write_text(TWO_SEEDS)
    entry = grid.expand(grid.load_experiment(tmp_path / "g.toml"), tmp_path)[0].to_dict()
    assert entry["config"] == RunConfig.from_dict(entry["config"]).to_dict()
    ref = {"reference": "bc-all", "config": entry["config"],
           "protocol": reference_protocol(entry["config"], "bc-all")}
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "bc-all.json").write_text(json.dumps(ref))
    kept, notes = matching_references(tmp_path / "refs", [entry], None)
    assert len(kept) == 1 and not notes
