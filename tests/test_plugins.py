"""Plugin loading: built-ins through entry points, broken and duplicate plugins, the example."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pluggy
import pytest

import mtrl_bench
from mtrl_bench.plugins import STRICT_ENV, MethodSpec, PluginError, Registry, hookimpl

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mtrl-bench-gradsign"


def _plugin(*names: str) -> types.ModuleType:
    mod = types.ModuleType("fake_plugin")

    @hookimpl
    def mtrl_bench_methods():
        return [MethodSpec(name=n, config_cls=_Cfg, strategy=None, description="x") for n in names]

    mod.mtrl_bench_methods = mtrl_bench_methods
    return mod


@__import__("dataclasses").dataclass
class _Cfg:
    pass


class _EntryPoint:
    """Stands in for an importlib entry point whose module raises on import."""

    def __init__(self, name: str, exc: Exception | None = None, obj: object = None) -> None:
        self.name, self.value, self._exc, self._obj = name, f"{name}_mod", exc, obj
        self.dist = types.SimpleNamespace(name=f"dist-{name}", version="9.9")

    def load(self) -> object:
        if self._exc:
            raise self._exc
        return self._obj


def test_builtin_methods_come_through_the_entry_point_group():
    reg = Registry()
    reg.load_entry_points()
    assert "prompt-dt" in reg.methods
    assert reg.methods["prompt-dt"].distribution == "mtrl-bench"
    names = {ep.name for ep in importlib.metadata.entry_points(group="mtrl_bench")}
    assert {"prompt-dt", "harmodt", "socodt"} <= names


def test_broken_plugin_is_named_and_the_rest_load(monkeypatch):
    eps = [_EntryPoint("broken", ImportError("no module named nonexistent_dep")),
           _EntryPoint("good", obj=_plugin("good-method"))]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: eps)
    monkeypatch.delenv(STRICT_ENV, raising=False)
    reg = Registry()
    with pytest.warns(UserWarning, match="plugin 'broken' from 'dist-broken' failed to load"):
        reg.load_entry_points()
    assert "good-method" in reg.methods
    assert "nonexistent_dep" in reg.failures["broken"]


def test_strict_mode_makes_a_broken_plugin_fatal(monkeypatch):
    eps = [_EntryPoint("broken", ImportError("boom"))]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: eps)
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(PluginError, match="broken"):
        Registry().load_entry_points()


def test_duplicate_method_names_are_rejected_naming_both_distributions():
    reg = Registry()
    reg.register(_plugin("same"), name="a", distribution="dist-a", version="1")
    with pytest.raises(PluginError, match="'same'.*'dist-a' and 'dist-b'"):
        reg.register(_plugin("same"), name="b", distribution="dist-b", version="1")
    assert reg.methods["same"].distribution == "dist-a"


def test_a_second_package_registering_a_builtin_name_is_fatal(monkeypatch):
    """Not a warning that lets the last one win: an error naming both, even when both entry
    points have the same name (pluggy alone would blame the wrong package)."""
    eps = [_EntryPoint("socodt", obj=_plugin("socodt")), _EntryPoint("socodt",
                                                                      obj=_plugin("socodt"))]
    eps[1].dist = types.SimpleNamespace(name="third-party", version="1.0")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: eps)
    monkeypatch.delenv(STRICT_ENV, raising=False)
    with pytest.raises(PluginError, match="'socodt' is registered by both 'dist-socodt' and "
                                          "'third-party'"):
        Registry().load_entry_points()


@pytest.mark.parametrize("returned, what", [({"name": "x"}, "returned a dict"),
                                            ("socodt", "returned a str"),
                                            (["socodt"], "holding a str")])
def test_a_hook_returning_the_wrong_thing_is_named(returned, what):
    mod = types.ModuleType("wrong")

    @hookimpl
    def mtrl_bench_methods():
        return returned

    mod.mtrl_bench_methods = mtrl_bench_methods
    with pytest.raises(PluginError, match=f"plugin 'wrong-dist'.*{what}"):
        Registry().register(mod, name="w", distribution="wrong-dist", version="1")


def test_misspelled_hook_fails_loudly():
    mod = types.ModuleType("typo")

    @hookimpl
    def mtrl_bench_method():  # missing the trailing s
        return []

    mod.mtrl_bench_method = mtrl_bench_method
    with pytest.raises(pluggy.PluginValidationError):
        Registry().register(mod, name="typo", distribution="d", version="1")


def test_unknown_method_suggests_the_closest_name():
    reg = Registry()
    reg.load_entry_points()
    with pytest.raises(KeyError, match="Did you mean 'prompt-dt'"):
        reg.method("promt-dt")


def test_spec_validation():
    with pytest.raises(PluginError, match="lowercase"):
        MethodSpec(name="Bad Name", config_cls=_Cfg, strategy=None, description="")
    for folder_breaking in ("x/../../../escaped", "..", "a\\b", "random5-\u0663"):
        with pytest.raises(PluginError, match="not a plain name"):  # names become folders
            MethodSpec(name=folder_breaking, config_cls=_Cfg, strategy=None, description="")
    with pytest.raises(PluginError, match="callable"):
        MethodSpec(name="m", config_cls=_Cfg, strategy="not a factory", description="")
    with pytest.raises(PluginError, match="diagnostics"):
        MethodSpec(name="m", config_cls=_Cfg, strategy=None, description="", diagnostics={"k": 1})
    # capabilities are derived, never declared: masks exactly when there is a strategy
    assert MethodSpec("m", _Cfg, None, "").capabilities == frozenset()
    assert MethodSpec("m", _Cfg, lambda ctx: None, "").capabilities == {"masks"}


def _cli(*args: str, env: dict | None = None, cwd: Path | None = None):
    return subprocess.run([sys.executable, "-m", "mtrl_bench.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    """The README's example plugin, pip-installed into a target dir on PYTHONPATH."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(EXAMPLE)],
                   check=True, capture_output=True, timeout=600)
    return target


@pytest.mark.slow
def test_example_plugin_is_listed_and_trains(installed_example, smoke_data, tmp_path):
    env = {"PYTHONPATH": str(installed_example), "MTRL_BENCH_DATA": str(smoke_data)}
    listed = _cli("methods", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "gradsign" in listed.stdout and "mtrl-bench-gradsign" in listed.stdout
    trained = _cli("train", "--method", "gradsign", "--profile", "smoke", "--quiet",
                   "--out", str(tmp_path / "run"), env=env)
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "run" / "DONE").exists()
    assert "mean" in trained.stdout
    checked = subprocess.run(  # the conformance kit passes the README's example
        [sys.executable, "-c", "from mtrl_bench.testing import check_method; "
         "check_method('gradsign'); print('conforms')"], capture_output=True, text=True,
        env={**os.environ, **env}, timeout=600)
    assert checked.returncode == 0 and "conforms" in checked.stdout, checked.stderr


def test_the_plugin_guide_shows_the_example_module_verbatim():
    readme = (ROOT / "docs" / "plugins.md").read_text()
    module = (EXAMPLE / "mtrl_bench_gradsign.py").read_text()
    body = textwrap.dedent(module).strip().splitlines()
    assert all(line in readme for line in body if line.strip()), "docs/plugins.md is out of date"


def test_the_cli_starts_without_importing_torch():
    """`mtrl-bench --help` and `data ...` need no torch; the package's exports load lazily."""
    code = ("import sys, mtrl_bench, mtrl_bench.cli; assert 'torch' not in sys.modules; "
            "from mtrl_bench import MaskStrategy; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        mtrl_bench.Nope  # noqa: B018
