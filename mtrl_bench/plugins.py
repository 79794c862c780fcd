"""Hook specifications, the method descriptor and robust entry-point loading (pluggy)."""
from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from mtrl_bench.masking import MaskStrategy, StrategyContext

PROJECT = "mtrl_bench"
ENTRY_POINT_GROUP = "mtrl_bench"
STRICT_ENV = "MTRL_BENCH_STRICT_PLUGINS"

CONDITIONINGS = ("prompt", "task-id")  # as mtrl_bench.model.CONDITIONINGS (no torch here)

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class PluginError(RuntimeError):
    """A plugin could not be loaded or registered a bad descriptor."""


class DuplicateMethodError(PluginError):
    """Two plugins register one method name: always fatal (the suite cannot know which one a
    result belongs to)."""


@dataclass(frozen=True)
class MethodSpec:
    """What a plugin tells the host about one method. The host instantiates; plugins describe.

    strategy: ``strategy(ctx: StrategyContext) -> MaskStrategy`` (mtrl_bench.masking), or None
        for a method without masks (the trainer then runs plain shared weights).
    config_cls: a dataclass whose defaults are the paper's hyperparameters.
    diagnostics: plot labels of the keys the strategy's ``update`` returns, in panel order
        (keys without a label are plotted under their own name, after these).
    conditioning: how the shared transformer learns which task it is on: "prompt" (a
        trajectory prompt of the task, Prompt-DT) or "task-id" (a learned task embedding).
    returns_to_go: False drops the return tokens (a sequence policy over states and actions).
    Masks are orthogonal to both: any strategy works with any conditioning.
    """

    name: str
    config_cls: type
    strategy: Callable[[StrategyContext], MaskStrategy] | None
    description: str
    citation: str = ""
    diagnostics: Mapping[str, str] = field(default_factory=dict)
    conditioning: str = "prompt"
    returns_to_go: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name != self.name.strip(
                ).lower() or " " in self.name:
            raise PluginError(f"method name {self.name!r} must be lowercase with no spaces")
        from mtrl_bench_envs.common import check_plain_name

        try:
            check_plain_name("method", self.name)
        except ValueError as exc:
            raise PluginError(str(exc)) from None
        if not dataclasses.is_dataclass(self.config_cls):
            raise PluginError(f"method {self.name!r}: config_cls must be a dataclass")
        if self.strategy is not None and not callable(self.strategy):
            raise PluginError(f"method {self.name!r}: strategy must be callable or None")
        if self.conditioning not in CONDITIONINGS:
            from mtrl_bench_envs.common import unknown_name_message

            raise PluginError(f"method {self.name!r}: " + unknown_name_message(
                "conditioning", self.conditioning, CONDITIONINGS))
        if not isinstance(self.returns_to_go, bool):
            raise PluginError(f"method {self.name!r}: returns_to_go must be True or False")
        if not isinstance(self.diagnostics, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.diagnostics.items()):
            raise PluginError(f"method {self.name!r}: diagnostics must map str keys to labels")

    @property
    def capabilities(self) -> frozenset[str]:
        """What the core may branch on (never on names), derived from what the spec provides."""
        return frozenset({"masks"} if self.strategy is not None else ())


def _spec_list(returned: object, distribution: str) -> list[MethodSpec]:
    """What a `mtrl_bench_methods` hook returned, checked: a list (or other iterable) of
    MethodSpec."""
    where = f"plugin '{distribution}': mtrl_bench_methods()"
    if isinstance(returned, (str, bytes, dict, MethodSpec)) or not isinstance(
            returned, Iterable):
        raise PluginError(f"{where} returned a {type(returned).__name__}; expected a list of "
                          "MethodSpec")
    specs = list(returned)
    for spec in specs:
        if not isinstance(spec, MethodSpec):
            raise PluginError(f"{where} returned a list holding a {type(spec).__name__}; "
                              "expected MethodSpec")
    return specs


class HookSpecs:
    """The hooks a plugin may implement."""

    @hookspec
    def mtrl_bench_methods(self) -> Iterable[MethodSpec]:  # type: ignore[empty-body]
        """Return the methods this plugin provides (called once, at load time)."""


@dataclass(frozen=True)
class LoadedMethod:
    spec: MethodSpec
    distribution: str  # the pip distribution (or module) that provided it
    version: str


class Registry:
    """The plugin manager plus the validated method table."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(HookSpecs)
        self.failures: dict[str, str] = {}
        self.methods: dict[str, LoadedMethod] = {}

    # -- loading -----------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Import every entry point of the group; a broken plugin is named and skipped."""
        strict = os.environ.get(STRICT_ENV, "") not in ("", "0")
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else ep.value
            version = ep.dist.version if ep.dist else "unknown"
            try:
                # named per distribution: two packages may both call an entry point "socodt"
                self.register(ep.load(), name=f"{dist}:{ep.name}", distribution=dist,
                              version=version)
            except DuplicateMethodError:
                raise
            except Exception as exc:  # isolate: one bad plugin must not take down the rest
                msg = (f"plugin '{ep.name}' from '{dist}' failed to load: "
                       f"{type(exc).__name__}: {exc}")
                if strict:
                    raise PluginError(msg) from exc
                self.failures[ep.name] = msg
                warnings.warn(msg + f" (set {STRICT_ENV}=1 to make this fatal)", stacklevel=2)

    def register(self, plugin: object, name: str, distribution: str, version: str) -> None:
        self.pm.register(plugin, name=name)
        self.pm.check_pending()  # misspelled hooks fail loudly, naming the plugin
        try:
            impls = self.pm.hook.mtrl_bench_methods.get_hookimpls()
            specs = [s for impl in impls if impl.plugin is plugin
                     for s in _spec_list(impl.function(), distribution)]
            for spec in specs:
                if spec.name in self.methods:
                    other = self.methods[spec.name].distribution
                    raise DuplicateMethodError(
                        f"method '{spec.name}' is registered by both '{other}' and "
                        f"'{distribution}'; uninstall one of them (pip uninstall ...)")
            for spec in specs:
                self.methods[spec.name] = LoadedMethod(spec, distribution, version)
        except Exception:
            self.pm.unregister(plugin)
            raise

    # -- lookup ------------------------------------------------------------------------------
    def method(self, name: str) -> LoadedMethod:
        if name not in self.methods:
            from mtrl_bench_envs.common import unknown_name_message

            raise KeyError(unknown_name_message("method", name, sorted(self.methods)))
        return self.methods[name]

    def distributions(self) -> dict[str, str]:
        """distribution -> version of every loaded plugin (for run manifests)."""
        return {m.distribution: m.version for m in self.methods.values()}


_REGISTRY: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        loaded = Registry()
        loaded.load_entry_points()  # a duplicate method name raises: nothing is kept
        _REGISTRY = loaded
    return _REGISTRY
