"""MTDT and MTBC: the shared transformer conditioned on a task-ID embedding instead of a prompt.

The SoCo-DT paper's baselines (§5.1), both from He et al., "Diffusion Model is an Effective
Planner and Data Synthesizer for Multi-Task Reinforcement Learning", NeurIPS 2023
(arXiv 2305.18459): MTDT, "Decision Transformer adapted for multi-task learning with task ID
embedding", and MTBC, "multi-task behaviour cloning with task ID conditioning".

Our reading (docs/usage.md, "Conditioning"): MTDT is the Prompt-DT transformer with a learned
embedding of the task index added to every token in place of the trajectory prompt; MTBC is the same
transformer without return tokens, a sequence policy over (s, a) tokens trained by the same MSE
on actions. MTBC here is a transformer over the context window, where the paper's MTBC is
described only as behaviour cloning with task-ID conditioning (commonly an MLP): with the cpu
profile's context of one step it sees what an MLP on (state, task) sees. Neither has method
hyperparameters: both use the profile's model, data and trainer, like Prompt-DT.
"""
from __future__ import annotations

from dataclasses import dataclass

from mtrl_bench.plugins import MethodSpec, hookimpl

CITATION = "He et al., NeurIPS 2023, arXiv 2305.18459 (baselines of SoCo-DT, AAAI 2026)"


@dataclass(frozen=True)
class TaskIDConfig:
    """No method hyperparameters beyond the shared model and trainer."""


@hookimpl
def mtrl_bench_methods() -> list[MethodSpec]:
    return [
        MethodSpec("mtdt", TaskIDConfig, None, "MTDT: the shared transformer conditioned on a "
                   "task-ID embedding, no prompt, no masks", CITATION, conditioning="task-id"),
        MethodSpec("mtbc", TaskIDConfig, None, "MTBC: task-ID-conditioned sequence policy over "
                   "(s, a) tokens, no returns-to-go, no masks", CITATION, conditioning="task-id",
                   returns_to_go=False),
    ]
