"""The built-in method plugins of mtrl-bench (Prompt-DT, MTDT/MTBC, HarmoDT, SoCo-DT).

This folder installs as the package `mtrl_bench_methods` (and `envs/` as `mtrl_bench_envs`):
bare `methods` and `envs` are names other packages use as top-level modules. The core finds these
plugins as it finds a third party's, through the `mtrl_bench` entry point group (pyproject.toml).
"""
