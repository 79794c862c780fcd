"""Env steps/s of batched evaluation against the raw env loop, measured in the same run.

Raw loop: the scripted policy steps the same envs (same goals and seeds) one after another, no
model. Batched: `evaluate` with a randomly initialised cpu-profile Prompt-DT (ModelConfig()
defaults), full 500-step episodes so both take the same steps, with shared weights and with
per-task masked weights, at 1 and 2 torch threads. Env construction is timed apart (the raw
loop builds the same envs, untimed). The raw loop runs before and after the batched runs and
the ratio uses their mean, because other processes may share the machine.

Also: the cost of one model call in fp32 and bf16, and the early-stop design (finished episodes
leave the batch vs a static batch), timed with the scripted expert driving the envs while the
real model runs on the same inputs.

    .venv/bin/python benchmarks/bench_eval.py            # MT5 x 10 episodes, threads 1 and 2
    .venv/bin/python benchmarks/bench_eval.py --threads 1  # ~15 min on a busy 2-core machine
    .venv/bin/python benchmarks/bench_eval.py --quick    # MT5 x 2 episodes
"""
from __future__ import annotations

import argparse
import os
import time
import warnings
from types import SimpleNamespace

import numpy as np
import torch
from metaworld.policies import ENV_POLICY_MAP
from tabulate import tabulate

from mtrl_bench.config import DataConfig, EvalConfig, ModelConfig
from mtrl_bench.data import OfflineData
from mtrl_bench.evaluation import env_specs, evaluate
from mtrl_bench.model import PromptDT, Segments
from mtrl_bench.testing import ScriptedExpert
from mtrl_bench_envs.suites import EPISODE_LENGTH, get_suite, make_env

warnings.filterwarnings("ignore", message="Constant.*too high")  # metaworld's expert policies


def random_data(tasks: tuple[str, ...], model_cfg: ModelConfig) -> OfflineData:
    """Random TaskDataset-like arrays: only the statistics and prompts matter here."""
    rng = np.random.default_rng(0)
    sets = [SimpleNamespace(task=t, observations=rng.normal(size=(2, EPISODE_LENGTH, 39)),
                            actions=rng.uniform(-1, 1, (2, EPISODE_LENGTH, 4)),
                            rewards=rng.uniform(0, 10, (2, EPISODE_LENGTH)),
                            successes=np.zeros((2, EPISODE_LENGTH), bool)) for t in tasks]
    return OfflineData(sets, DataConfig(), model_cfg)


def raw_loop(specs: list[list[tuple[str, int, int]]]) -> tuple[float, float]:
    """(env steps/s, build seconds) of the scripted policies stepping the envs one by one."""
    tic = time.perf_counter()
    envs = [(make_env(*spec), ENV_POLICY_MAP[spec[0]]()) for row in specs for spec in row]
    build = time.perf_counter() - tic
    tic = time.perf_counter()
    for env, policy in envs:
        obs, _ = env.reset()
        for _ in range(EPISODE_LENGTH):
            obs = env.step(np.clip(policy.get_action(obs), -1.0, 1.0))[0]
    return len(envs) * EPISODE_LENGTH / (time.perf_counter() - tic), build


def model_call_ms(model: PromptDT, data: OfflineData, episodes: int,
                  amp_dtype: torch.dtype | None, reps: int = 5) -> dict[str, float]:
    """Milliseconds of one evaluation-shaped model call (N, E, K): the full training forward
    against what `evaluate` runs per step (`act` after the prompt was encoded once)."""
    prompt = data.eval_prompts(episodes)
    g, b, k = data.num_tasks, episodes, data.K
    seg = Segments(torch.zeros(g, b, k, 39), torch.zeros(g, b, k, 4), torch.zeros(g, b, k, 1),
                   torch.arange(k).expand(g, b, k), torch.ones(g, b, k, dtype=torch.bool))
    amp = torch.autocast("cpu", dtype=amp_dtype, enabled=amp_dtype is not None)
    times = {}
    with torch.inference_mode(), amp:
        cache = model.encode_prompt(prompt)
        calls = {"full forward": lambda: model(seg, prompt),
                 "act, prompt cached": lambda: model.act(seg, cache)}
        for name, call in calls.items():
            call()
            tic = time.perf_counter()
            for _ in range(reps):
                call()
            times[name] = (time.perf_counter() - tic) / reps * 1e3
    return times


def random_masks(model: PromptDT, n: int, density: float = 0.8) -> dict[str, torch.Tensor]:
    """Per-task effective weights W * M_i with random binary masks (a HarmoDT-like state)."""
    gen = torch.Generator().manual_seed(0)
    return {name: w.detach() * (torch.rand((n, *w.shape), generator=gen) < density)
            for name, w in model.maskable_parameters().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="mt5")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="2 episodes per task")
    parser.add_argument("--threads", default="1,2", help="torch thread counts to try")
    args = parser.parse_args()
    episodes = 2 if args.quick else args.episodes
    suite = get_suite(args.suite)
    model_cfg = ModelConfig()
    data = random_data(suite.tasks, model_cfg)
    torch.manual_seed(0)
    model = PromptDT(model_cfg, 39, 4).eval()
    masks = random_masks(model, data.num_tasks)
    cfg = EvalConfig(episodes_per_task=episodes, early_stop=False)
    specs = env_specs(data.tasks, suite, cfg)
    n_envs = data.num_tasks * episodes
    print(f"{suite.name}: {data.num_tasks} tasks x {episodes} episodes = {n_envs} envs, "
          f"cpu-profile model ({sum(p.numel() for p in model.parameters()):,} params); "
          f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    raw_before, raw_build = raw_loop(specs)
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for label, weights in (("shared", None), ("masked", masks)):
            res = evaluate(model, data, suite, cfg, weights=weights, progress=False)
            rate = res["env_steps"] / (res["seconds"] - res["build_seconds"])
            rows.append([f"batched {label}", threads, rate, res["build_seconds"]])
            print(f"  {rows[-1][0]}, {threads} thread(s): {rate:.0f} env steps/s", flush=True)
    raw_after, _ = raw_loop(specs)
    raw = (raw_before + raw_after) / 2
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    table = [["raw loop (before / after)", 1, f"{raw_before:.0f} / {raw_after:.0f}", "",
              f"{raw_build:.1f}"]]
    table += [[name, t, f"{rate:.0f}", f"{rate / raw:.0%}", f"{build:.1f}"]
              for name, t, rate, build in rows]
    print(tabulate(table, ["", "threads", "env steps/s", "vs raw", "env build s"]))

    best = max(rows, key=lambda row: row[2])[1]  # the thread count that ran fastest above
    torch.set_num_threads(best)
    calls = [[f"{call}, {name}", f"{ms:.1f}"]
             for name, dt in (("fp32", None), ("bf16 autocast", torch.bfloat16))
             for call, ms in model_call_ms(model, data, episodes, dt).items()]
    print(f"\none model call ({data.num_tasks}, {episodes}, K={data.K}), {best} thread(s)")
    print(tabulate(calls, ["", "ms"]))

    expert = ScriptedExpert(data, inner=model)
    stop_cfg = EvalConfig(episodes_per_task=episodes, early_stop=True)
    modes = {"finished episodes leave the batch": True, "static batch": False}
    stop = {label: [] for label in modes}
    for _ in range(2):  # alternate the modes so load from other processes hits both alike
        for label, shrink in modes.items():
            res = evaluate(expert, data, suite, stop_cfg,
                           progress=False, shrink=shrink)
            stop[label].append((res["seconds"] - res["build_seconds"], res["env_steps"],
                                res["success"]))
    stop_rows = [[label, runs[0][1], " / ".join(f"{r[0]:.1f}" for r in runs), f"{runs[0][2]:.0%}"]
                 for label, runs in stop.items()]
    print(f"\nearly stop, scripted expert acting, the model run for its cost, {best} thread(s)")
    print(tabulate(stop_rows, ["", "env steps", "rollout s (2 runs)", "success"]))


if __name__ == "__main__":
    main()
