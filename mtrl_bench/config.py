"""Typed run configuration: dataclasses, scale profiles (TOML), `section.field=value` overrides.

A run is two things. Its identity, `RunConfig` (method and its hyperparameters, suite, quality,
seed, model/data/train/eval protocol), decides the result and names the run directory. Its
execution, `Execution` (device, threads, mixed precision, data folder, progress bars), decides only
how fast the result comes: it is recorded in the run's manifest and never part of its name, so a
finished run is found again whatever device or thread count asks for it.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
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


GENERATED = "generated"  # data.source: the suite's own generated buffers


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
    # The suite's generated buffers, or Minari datasets "minari:<namespace>" (one per task,
    # <namespace>/<task>-v<N> under $MINARI_DATASETS_PATH) or "minari:/abs/path/<namespace>";
    # then recipe/episodes/data_seed are unused
    source: str = "generated"


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


@dataclass
class EvalConfig:
    episodes_per_task: int = 10  # one per goal, cycling through the 50 training goals
    # Episodes per task of the evaluations during training (train.eval_interval), which only
    # draw the learning curve; 0 = episodes_per_task. The final evaluation always uses that.
    curve_episodes_per_task: int = 0
    early_stop: bool = True  # stop an episode at success (returns then cover a partial episode)
    target_return: float = 1.0  # conditioning return, as a multiple of the task's best data return
    seed: int = 1000  # env seeds for evaluation: seed + episode index


AMP_MODES = ("auto", "bf16", "none")
# The string fields with a fixed set of values (checked by RunConfig.validate).
CHOICES = {"model.timestep_init": ("torch", "gpt2"), "data.windows": ("start", "end"),
           "train.lr_schedule": ("constant", "cosine")}
# Execution settings that older configs (and `--set`) name as config fields.
EXECUTION_ALIASES = {"device": "device", "train.threads": "threads", "train.amp": "amp"}


@dataclass
class Execution:
    """How a run is executed; never part of its identity (see the module docstring)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads; 0 = decided by the caller (all cores for one run)
    # Processes stepping evaluation envs (this one and eval_workers - 1 more); 0 = the run's
    # torch threads, its share of the cores: the model and the envs take turns, never overlap.
    eval_workers: int = 0
    # bf16 autocast: "auto" = where it pays (GPUs with bf16, CPUs with AVX-512-BF16/AMX; on an
    # AVX2-only CPU it made a step ~5x slower, BENCHMARKS.md).
    amp: str = "auto"
    data_dir: str | None = None  # dataset root (None: $MTRL_BENCH_DATA or the user cache)
    progress: bool = True
    tensorboard: bool = True  # event files in RUN_DIR/tb when the extra is installed

    def __post_init__(self) -> None:
        from mtrl_bench_envs.common import unknown_name_message

        if self.amp not in AMP_MODES:
            raise ConfigError(unknown_name_message("amp mode", self.amp, AMP_MODES))
        for name in ("threads", "eval_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def with_settings(self, **settings: Any) -> Execution:
        """A copy with `settings` (strings from the command line are parsed) applied."""
        return dataclasses.replace(self, **{k: _coerce("execution", self, k, v)
                                            for k, v in settings.items()})


@dataclass
class RunConfig:
    """A run's identity: everything that decides its result (hashed into its directory name)."""

    method: str
    suite: str = "mt5"
    quality: str = "near-optimal"
    seed: int = 0
    profile: str = "cpu"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    method_config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["data"]["source"] == GENERATED:  # named only when set: runs that predate the
            del d["data"]["source"]  # field keep their names
        return d

    def validate(self) -> RunConfig:
        """Raise ConfigError naming the first field whose value cannot train (before anything
        is written); returns self."""
        m, d, t, e = self.model, self.data, self.train, self.eval
        positive = {"model.embed_dim": m.embed_dim, "model.n_layer": m.n_layer,
                    "model.n_head": m.n_head, "model.context_len": m.context_len,
                    "model.prompt_len": m.prompt_len, "model.max_ep_len": m.max_ep_len,
                    "data.episodes": d.episodes, "data.prompt_pool": d.prompt_pool,
                    "train.steps": t.steps, "train.batch_per_task": t.batch_per_task,
                    "train.mask_interval": t.mask_interval, "train.log_interval": t.log_interval,
                    "train.checkpoint_interval": t.checkpoint_interval,
                    "eval.episodes_per_task": e.episodes_per_task}
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        non_negative = {"train.eval_interval": t.eval_interval, "train.lr": t.lr,
                        "train.weight_decay": t.weight_decay, "train.warmup_steps": t.warmup_steps,
                        "train.grad_clip": t.grad_clip, "data.data_seed": d.data_seed,
                        "eval.curve_episodes_per_task": e.curve_episodes_per_task,
                        "model.dropout": m.dropout, "seed": self.seed}
        for name, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")
        if m.embed_dim % m.n_head:
            raise ConfigError(f"model.n_head ({m.n_head}) must divide model.embed_dim "
                              f"({m.embed_dim})")
        if not 0 <= m.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), got {m.dropout}")
        if d.rtg_scale <= 0 or not t.lr > 0:
            raise ConfigError("data.rtg_scale and train.lr must be positive, got "
                              f"{d.rtg_scale} and {t.lr}")
        from mtrl_bench_envs.recipe import RECIPES

        if d.recipe not in RECIPES:
            from mtrl_bench_envs.common import unknown_name_message

            raise ConfigError("data.recipe: " + unknown_name_message("recipe", d.recipe, RECIPES))
        if d.source != GENERATED:
            from mtrl_bench_envs.minari_format import PREFIX, check_source

            if not d.source.startswith(PREFIX):
                raise ConfigError(f"data.source: '{d.source}' is neither '{GENERATED}' (the "
                                  f"suite's own buffers) nor '{PREFIX}<namespace or folder>' "
                                  "(Minari datasets)")
            try:
                check_source(d.source)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        for name, valid in CHOICES.items():
            section, _, key = name.partition(".")
            value = getattr(getattr(self, section), key)
            if value not in valid:
                from mtrl_bench_envs.common import unknown_name_message

                raise ConfigError(f"{name}: " + unknown_name_message("value", value, valid))
        return self

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        sections = {f.name: f.type for f in fields(cls)}
        d, _ = split_execution(d)  # written before execution settings were separated
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


def split_execution(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(identity, execution settings) of a config dict that may still hold `device`,
    `train.threads` or `train.amp` (as configs written before they were separated did)."""
    identity = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
    execution = {}
    for dotted, name in EXECUTION_ALIASES.items():
        section, _, key = dotted.rpartition(".")
        holder = identity.get(section) if section else identity
        if isinstance(holder, dict) and key in holder:
            execution[name] = holder.pop(key)
    return identity, execution


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config overrides, execution settings): `execution.<field>` and the aliases
    `train.threads`, `train.amp` and `device` set how a run executes, not what it is."""
    config, execution = {}, {}
    for key, value in overrides.items():
        if key.startswith("execution."):
            execution[key.removeprefix("execution.")] = value
        elif key in EXECUTION_ALIASES:
            execution[EXECUTION_ALIASES[key]] = value
        else:
            config[key] = value
    return config, execution


PROFILES = ("smoke", "cpu", "paper")


def load_profile(name: str) -> dict[str, dict[str, Any]]:
    """A profile is a TOML file of scale fields: [model], [data], [train], [eval], and the
    execution settings it runs best with ([execution]: not part of a run's identity)."""
    if name not in PROFILES:
        from mtrl_bench_envs.common import unknown_name_message

        raise ConfigError(unknown_name_message("profile", name, PROFILES))
    text = resources.files("mtrl_bench").joinpath(f"profiles/{name}.toml").read_text()
    return tomllib.loads(text)


def field_types(obj: Any) -> dict[str, Any]:
    """The real types of a dataclass's fields, whether or not its module postpones annotations
    (`from __future__ import annotations` makes them strings; a plugin's config may not)."""
    cls = obj if isinstance(obj, type) else type(obj)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that cannot be resolved: fall back to what is written
        hints = {}
    return {f.name: hints.get(f.name, f.type) for f in fields(cls)}


_SCALARS = {"int": int, "float": float, "bool": bool, "str": str}


def _scalar(annotation: Any) -> tuple[type | None, bool]:
    """(int | float | bool | str or None for anything else, whether None is allowed)."""
    if isinstance(annotation, str):  # unresolved: read the written form
        optional = annotation.replace(" ", "").endswith("|None")
        return _SCALARS.get(annotation.split("|")[0].strip()), optional
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 and rest[0] in _SCALARS.values() else None,
                type(None) in args)
    return (annotation if annotation in _SCALARS.values() else None), False


def _coerce(section: str, obj: Any, key: str, value: Any) -> Any:
    """Check `value` against the dataclass field's type; parse strings from the command line."""
    from mtrl_bench_envs.common import unknown_name_message

    types_ = field_types(obj)
    if key not in types_:
        raise ConfigError(unknown_name_message("field", f"{section}.{key}",
                                               [f"{section}.{k}" for k in sorted(types_)]))
    want, optional = _scalar(types_[key])
    shown = getattr(want, "__name__", str(types_[key])) + (" | None" if optional else "")
    if value is None and optional:
        return None
    if isinstance(value, str) and want not in (str, None):
        text = value.strip()
        if optional and text.lower() in ("none", "null"):
            return None
        if want is bool:
            if text.lower() not in ("true", "false"):
                raise ConfigError(f"'{section}.{key}' expects bool (true or false), got {value!r}")
            return text.lower() == "true"
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ConfigError(f"'{section}.{key}' expects {shown}, got {value!r}") from None
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    wrong_bool = want in (int, float) and isinstance(value, bool)
    if want is not None and (not isinstance(value, want) or wrong_bool):
        raise ConfigError(f"'{section}.{key}' expects {shown}, got {value!r}")
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


def build_execution(profile: str = "cpu", settings: dict[str, Any] | None = None) -> Execution:
    """Execution settings: defaults <- the profile's [execution] <- `settings` (which win)."""
    execution = Execution().with_settings(**load_profile(profile).get("execution", {}))
    return execution.with_settings(**(settings or {}))


def build_config(method: str, suite: str, quality: str, seed: int, profile: str = "cpu",
                 overrides: dict[str, Any] | None = None,
                 method_config_cls: type | None = None) -> RunConfig:
    """Resolve a run config: dataclass defaults <- profile <- `section.field` overrides.

    Execution settings among the overrides are an error here: `split_overrides` first."""
    try:
        check_quality(quality)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    cfg = RunConfig(method=method, suite=suite, quality=quality, seed=seed, profile=profile)
    method_cfg = _method_config(method, method_config_cls, {}) if method_config_cls else None
    for section, values in load_profile(profile).items():
        if section != "execution":
            apply_section(section, getattr(cfg, section), values)
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if section == "method":
            if method_cfg is None or not fields(method_cfg):
                raise ConfigError(f"method '{method}' has no config fields; got '{dotted}'")
            method_cfg = _method_config(method, type(method_cfg), {
                **dataclasses.asdict(method_cfg), key: _coerce(section, method_cfg, key, value)},
                dotted, value)
        elif section in ("model", "data", "train", "eval") and key:
            apply_section(section, getattr(cfg, section), {key: value})
        elif dotted in EXECUTION_ALIASES or section == "execution":
            raise ConfigError(f"'{dotted}' is an execution setting, not part of the run config")
        else:
            raise ConfigError(f"override '{dotted}' must look like section.field with section in "
                              "model, data, train, eval, method, execution")
    if method_cfg is not None:
        cfg.method_config = dataclasses.asdict(method_cfg)
    return cfg.validate()


def _method_config(method: str, cls: type, values: dict[str, Any], dotted: str = "",
                   value: Any = None) -> Any:
    """The method's config dataclass built from `values` (configs may be frozen: built anew,
    never assigned); its own validation error (``__post_init__``) is named after the method and
    the override that caused it."""
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        cause = f" ({dotted}={value!r})" if dotted else " (its defaults)"
        raise ConfigError(f"method '{method}'{cause}: {exc}") from None


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
