"""Typed run configuration: dataclasses, scale profiles (TOML), `section.field=value` overrides."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from typing import Any

import tomllib

from mtrl_bench_envs.card import check_quality  # qualities are defined where the datasets are


@dataclass
class ModelConfig:
    embed_dim: int = 128
    n_layer: int = 3
    n_head: int = 4
    context_len: int = 20  # K: (R, s, a) steps per segment
    prompt_len: int = 5  # prompt steps prepended (one episode's last steps)
    dropout: float = 0.1
    max_ep_len: int = 1000  # timestep-embedding table size (reference code: 1000)
    # Init of the timestep embeddings: "torch" = N(0, 1), PyTorch's default, as the reference
    # code; "gpt2" = N(0, 0.02), like the transformer's own weights. At N(0, 1) the timestep
    # term is ~10x the state term of every token after the LayerNorm, which takes the model
    # thousands of updates to undo (BENCHMARKS.md, "CPU protocol").
    timestep_init: str = "torch"


@dataclass
class DataConfig:
    episodes: int = 100  # buffer episodes per task; sub-optimal uses the first half
    data_seed: int = 0  # dataset generation seed (independent of the training seed)
    rtg_scale: float = 1000.0  # returns-to-go are divided by this (reference code)
    prompt_pool: int = 5  # training prompts come from the task's top-k return episodes
    # Training windows: "start" = a uniform first step, as the reference code (an episode's
    # first steps then sit only in windows starting at 0); "end" = a uniform last step, padded
    # on the left before step K-1 exactly as evaluation's windows are.
    windows: str = "start"
    recipe: str = "scripted-replay-v2"  # how the buffer was generated (mtrl_bench_envs.recipe)


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_per_task: int = 8  # segments per task per step
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 300
    # After warm-up: "constant" (reference code) or "cosine" (decays to 0, which the last update
    # of a run reaches: that one update is a no-op).
    lr_schedule: str = "constant"
    grad_clip: float = 0.25
    mask_interval: int = 50  # steps between mask updates (scale field: a ratio of `steps`)
    log_interval: int = 50
    checkpoint_interval: int = 500
    eval_interval: int = 0  # 0: evaluate only the final model
    amp: str = "auto"  # auto | bf16 | fp16 | none
    threads: int = 0  # torch intra-op threads; 0 = all cores


@dataclass
class EvalConfig:
    episodes_per_task: int = 10  # one per goal, cycling through the 50 training goals
    # Episodes per task of the evaluations during training (train.eval_interval), which only
    # draw the learning curve; 0 = episodes_per_task. The final evaluation always uses that.
    curve_episodes_per_task: int = 0
    early_stop: bool = True  # stop an episode at success (returns then cover a partial episode)
    target_return: float = 1.0  # conditioning return, as a multiple of the task's best data return
    seed: int = 1000  # env seeds for evaluation: seed + episode index


@dataclass
class RunConfig:
    method: str = "prompt-dt"
    suite: str = "mt5"
    quality: str = "near-optimal"
    seed: int = 0
    profile: str = "cpu"
    device: str = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    method_config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        sections = {f.name: f.type for f in fields(cls)}
        kwargs = dict(d)
        if "data" in d and "recipe" not in d["data"]:  # written before recipes were selectable
            d = {**d, "data": {**d["data"], "recipe": "scripted-replay-v1"}}
        for name, sub in (("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig),
                          ("eval", EvalConfig)):
            kwargs[name] = sub(**d.get(name, {}))
        unknown = set(kwargs) - set(sections)
        if unknown:
            raise ConfigError(f"unknown config keys: {sorted(unknown)}")
        return cls(**kwargs)


class ConfigError(ValueError):
    """A malformed profile, override or config file."""


PROFILES = ("smoke", "cpu", "paper")


def load_profile(name: str) -> dict[str, dict[str, Any]]:
    """A profile is a TOML file of scale fields: [model], [data], [train], [eval]."""
    if name not in PROFILES:
        from mtrl_bench_envs.common import unknown_name_message

        raise ConfigError(unknown_name_message("profile", name, PROFILES))
    text = resources.files("mtrl_bench").joinpath(f"profiles/{name}.toml").read_text()
    return tomllib.loads(text)


def _coerce(section: str, obj: Any, key: str, value: Any) -> Any:
    """Check `value` against the dataclass field's type; parse strings from the command line."""
    types = {f.name: f.type for f in fields(obj)}
    if key not in types:
        raise ConfigError(f"unknown field '{section}.{key}'; valid: {', '.join(sorted(types))}")
    want = {"int": int, "float": float, "bool": bool, "str": str}.get(str(types[key]), None)
    if isinstance(value, str) and want is not str:
        try:
            value = json.loads(value.lower() if want is bool else value)
        except json.JSONDecodeError:
            raise ConfigError(f"'{section}.{key}' expects {types[key]}, got {value!r}") from None
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    wrong_bool = want in (int, float) and isinstance(value, bool)
    if want is not None and (not isinstance(value, want) or wrong_bool):
        raise ConfigError(f"'{section}.{key}' expects {types[key]}, got {value!r}")
    return value


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """Command-line ``--set section.field=value`` pairs -> {"section.field": "value"}."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects section.field=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def apply_section(section: str, obj: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        setattr(obj, key, _coerce(section, obj, key, value))


def build_config(method: str, suite: str, quality: str, seed: int, profile: str = "cpu",
                 device: str = "auto", overrides: dict[str, Any] | None = None,
                 method_config_cls: type | None = None) -> RunConfig:
    """Resolve a run config: dataclass defaults <- profile <- `section.field` overrides."""
    try:
        check_quality(quality)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    cfg = RunConfig(method=method, suite=suite, quality=quality, seed=seed, profile=profile,
                    device=device)
    method_cfg = method_config_cls() if method_config_cls else None
    for section, values in load_profile(profile).items():
        apply_section(section, getattr(cfg, section), values)
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if section == "method":
            if method_cfg is None:
                raise ConfigError(f"method '{method}' has no config fields; got '{dotted}'")
            # method configs may be frozen: rebuild rather than assign
            method_cfg = dataclasses.replace(method_cfg,
                                             **{key: _coerce(section, method_cfg, key, value)})
        elif section in ("model", "data", "train", "eval") and key:
            apply_section(section, getattr(cfg, section), {key: value})
        else:
            raise ConfigError(f"override '{dotted}' must look like section.field with section in "
                              "model, data, train, eval, method")
    if method_cfg is not None:
        cfg.method_config = dataclasses.asdict(method_cfg)
    return cfg


def config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two config dicts (for refusing mismatched resumes)."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} != {vb!r}")
    return out
