"""Prompt-DT: the unmasked multi-task baseline; every task shares every weight.

Paper: Xu et al., "Prompting Decision Transformer for Few-Shot Policy Generalization", ICML 2022,
https://arxiv.org/abs/2206.13499; code: https://github.com/mxu34/prompt-dt @5f665e5.
"""
from __future__ import annotations

from dataclasses import dataclass

from mtrl_bench.plugins import MethodSpec, hookimpl


@dataclass(frozen=True)
class PromptDTConfig:
    """Prompt-DT has no method hyperparameters beyond the shared model and trainer."""


@hookimpl
def mtrl_bench_methods() -> list[MethodSpec]:
    return [MethodSpec(
        name="prompt-dt",
        config_cls=PromptDTConfig,
        strategy=None,
        description="Prompt-DT: one shared transformer, no parameter masks",
        citation="Xu et al., ICML 2022, arXiv:2206.13499",
    )]
