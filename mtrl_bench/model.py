"""The Prompt-DT transformer, with optional per-task effective weights for masked methods.

Follows the Prompt-DT / HarmoDT reference code (github.com/mxu34/prompt-dt @5f665e5,
github.com/charleshsc/HarmoDT @1c4244f; see docs/design.md, "The reference code"): a GPT-2 style
causal transformer with no positional embedding, a timestep embedding added to every (R, s, a)
token, separate embeddings for the prompt tokens (not layer-normed), a tanh action head.

Task batching: inputs carry a leading task-group axis G. Given `weights`, a dict from maskable
parameter name to a (G, out, in) tensor, every maskable linear layer runs group g with its own
weight matrix through one `baddbmm`; attention runs on the flattened (G*B) batch. That is how a
single forward/backward pass yields every task's gradient w.r.t. its own effective weights.

The forward runs in two parts: `encode_prompt` (the prompt comes first and attends only to
itself, so its keys/values do not depend on the window) and `decode`. Evaluation encodes each
prompt once per batch of episodes and calls `act` every env step, whose last block works on the
current state token alone.

How the model knows its task is the method's choice (`MethodSpec.conditioning`): "prompt" (a
trajectory prompt, Prompt-DT and every masked method) or "task-id" (a learned embedding of the
task index added to every token, no prompt: MTDT, MTBC). `returns_to_go=False` drops the return
tokens: a sequence policy over (s, a) tokens (MTBC). Task group g is task g of the suite.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mtrl_bench.config import CHOICES, ModelConfig
from mtrl_bench.plugins import CONDITIONINGS

Weights = dict[str, torch.Tensor]
TIMESTEP_INITS = CHOICES["model.timestep_init"]  # see ModelConfig.timestep_init


@dataclass
class Segments:
    """A batch of trajectory windows; every field has leading dims (G, B, T)."""

    states: torch.Tensor  # (G, B, T, S) normalised
    actions: torch.Tensor  # (G, B, T, A)
    rtg: torch.Tensor  # (G, B, T, 1) return-to-go / rtg_scale
    timesteps: torch.Tensor  # (G, B, T) long, absolute env step
    mask: torch.Tensor  # (G, B, T) bool, False on left padding

    def to(self, device: torch.device | str) -> Segments:
        return Segments(*(getattr(self, f).to(device, non_blocking=True)
                          for f in ("states", "actions", "rtg", "timesteps", "mask")))


class MaskableLinear(nn.Linear):
    """nn.Linear that uses weights[key] (G, out, in) per task group when given."""

    key: str = ""

    def forward(self, x: torch.Tensor, weights: Weights | None = None) -> torch.Tensor:
        w = None if weights is None else weights.get(self.key)
        if w is None:
            return F.linear(x, self.weight, self.bias)
        g = w.shape[0]
        flat = x.reshape(g, -1, x.shape[-1])  # (G, B*T, in)
        out = torch.baddbmm(self.bias.to(flat.dtype), flat, w.to(flat.dtype).transpose(1, 2))
        return out.view(*x.shape[:-1], -1)


class Block(nn.Module):
    """A pre-LN transformer block, split in two so callers can keep and reuse keys/values."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.embed_dim
        self.n_head = cfg.n_head
        self.ln_1, self.ln_2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.c_attn, self.attn_proj = MaskableLinear(c, 3 * c), MaskableLinear(c, c)
        self.c_fc, self.mlp_proj = MaskableLinear(c, 4 * c), MaskableLinear(4 * c, c)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def qkv(self, x: torch.Tensor, weights: Weights | None) -> list[torch.Tensor]:
        """Queries, keys, values of tokens x (G, B, T, C), each (G*B, H, T, C/H)."""
        g, b, t, c = x.shape
        return [z.reshape(g * b, t, self.n_head, c // self.n_head).transpose(1, 2)
                for z in self.c_attn(self.ln_1(x), weights).split(c, dim=-1)]

    def attend(self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               attn_mask: torch.Tensor, weights: Weights | None) -> torch.Tensor:
        """The rest of the block for the tokens x (G, B, Tq, C) whose queries are q."""
        g, b, t, c = x.shape
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(g, b, t, c)
        x = x + self.resid_drop(self.attn_proj(y, weights))
        h = F.relu(self.c_fc(self.ln_2(x), weights))
        return x + self.resid_drop(self.mlp_proj(h, weights))


class PromptCache(NamedTuple):
    """A prompt run through the blocks: its keys and values per block, and which are valid."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per block, each (G*B, H, 3P, C/H); [] = none
    valid: torch.Tensor | None  # (G*B, 1, 1, 3P) bool; None without a prompt


def attention_mask(valid: torch.Tensor, past_valid: torch.Tensor | None = None) -> torch.Tensor:
    """(G*B, 1, T, Tp+T): token i sees the valid earlier tokens, the valid past, and itself.

    valid: (G*B, T) bool; past_valid: (G*B, 1, 1, Tp) for tokens before these (the prompt).
    A padded query also sees itself, so no attention row is empty (SDPA would give NaN).
    """
    n = valid.shape[-1]
    causal = torch.ones(n, n, dtype=torch.bool, device=valid.device).tril()
    own = (causal & valid[:, None, None, :]) | torch.eye(n, dtype=torch.bool, device=valid.device)
    if past_valid is None:
        return own
    return torch.cat([past_valid.expand(-1, -1, n, -1), own], dim=-1)


class PromptDT(nn.Module):
    def __init__(self, cfg: ModelConfig, state_dim: int, act_dim: int,
                 conditioning: str = "prompt", num_tasks: int = 0,
                 returns_to_go: bool = True) -> None:
        super().__init__()
        if conditioning not in CONDITIONINGS or (conditioning == "task-id" and num_tasks < 1):
            raise ValueError(f"conditioning must be one of {', '.join(CONDITIONINGS)} (task-id "
                             f"needs num_tasks >= 1), got {conditioning!r}, {num_tasks}")
        self.conditioning, self.returns_to_go = conditioning, returns_to_go
        self.per_step = 3 if returns_to_go else 2  # tokens per step: (R,) s, a
        self.cfg, c = cfg, cfg.embed_dim
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(c)
        self.apply(self._gpt2_init)  # GPT-2 init inside the transformer only, as the reference
        self.embed_timestep = nn.Embedding(cfg.max_ep_len, c)
        self.embed_return, self.embed_state = nn.Linear(1, c), nn.Linear(state_dim, c)
        self.embed_action = nn.Linear(act_dim, c)
        self.embed_ln = nn.LayerNorm(c)
        self.prompt_embed_timestep = nn.Embedding(cfg.max_ep_len, c)
        self.prompt_embed_return = nn.Linear(1, c)
        self.prompt_embed_state = nn.Linear(state_dim, c)
        self.prompt_embed_action = nn.Linear(act_dim, c)
        self.embed_drop = nn.Dropout(cfg.dropout)
        self.predict_action = nn.Sequential(nn.Linear(c, act_dim), nn.Tanh())
        if cfg.timestep_init not in TIMESTEP_INITS:
            raise ValueError(f"model.timestep_init must be one of {', '.join(TIMESTEP_INITS)}, "
                             f"got {cfg.timestep_init!r}")
        # Created after every module above, so prompt-conditioned models initialise as before.
        if conditioning == "task-id":
            self.embed_task = nn.Embedding(num_tasks, c)
            del self.prompt_embed_timestep, self.prompt_embed_return  # no prompt
            del self.prompt_embed_state, self.prompt_embed_action
        if not returns_to_go:
            del self.embed_return
        if cfg.timestep_init == "gpt2":  # every embedding table alike
            for table in self.modules():
                if isinstance(table, nn.Embedding):
                    nn.init.normal_(table.weight, std=0.02)
        for name, module in self.named_modules():
            if isinstance(module, MaskableLinear):
                module.key = f"{name}.weight"

    @staticmethod
    def _gpt2_init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def maskable_parameters(self) -> dict[str, nn.Parameter]:
        """The weight matrices of the transformer blocks: what masking strategies act on."""
        return {m.key: m.weight for m in self.modules() if isinstance(m, MaskableLinear)}

    def _tokens(self, seg: Segments, prompt: bool, tasks: torch.Tensor | None = None
                ) -> torch.Tensor:
        """(G, B, T, ...) -> interleaved (R, s, a) tokens (G, B, 3T, C); (s, a) tokens
        (G, B, 2T, C) without returns-to-go. With task-id conditioning, group g's tokens carry
        the embedding of task `tasks[g]` (default: task g, every task in order)."""
        p = "prompt_" if prompt else ""
        time = getattr(self, f"{p}embed_timestep")(seg.timesteps.clamp(0, self.cfg.max_ep_len - 1))
        if self.conditioning == "task-id":
            table = self.embed_task.weight
            rows = table[: time.shape[0]] if tasks is None else table[tasks]
            time = time + rows[:, None, None, :]
        parts = [getattr(self, f"{p}embed_state")(seg.states),
                 getattr(self, f"{p}embed_action")(seg.actions)]
        if self.returns_to_go:
            parts.insert(0, getattr(self, f"{p}embed_return")(seg.rtg))
        toks = torch.stack([part + time for part in parts], dim=3)
        g, b, t = seg.mask.shape
        return toks.reshape(g, b, self.per_step * t, -1)

    def encode_prompt(self, prompt: Segments, weights: Weights | None = None) -> PromptCache:
        """Run the prompt through the blocks once. It attends only to itself (it comes first),
        so its keys and values serve every window that follows it. Without prompt conditioning:
        an empty cache."""
        if self.conditioning != "prompt":
            return PromptCache([], None)
        g, b, _ = prompt.mask.shape
        x = self.embed_drop(self._tokens(prompt, True))  # (G, B, 3P, C)
        valid = prompt.mask.repeat_interleave(self.per_step, dim=2).reshape(g * b, -1)
        mask = attention_mask(valid)
        kv = []
        for i, block in enumerate(self.blocks):
            q, k, v = block.qkv(x, weights)
            kv.append((k, v))
            if i + 1 < len(self.blocks):  # the prompt's own outputs are never read
                x = block.attend(x, q, k, v, mask, weights)
        return PromptCache(kv, valid[:, None, None, :])

    def decode(self, seg: Segments, cache: PromptCache, weights: Weights | None = None,
               last_only: bool = False, tasks: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted actions (G, B, T, A) for the state tokens of `seg`, after a cached prompt.

        last_only: predict only the last state token's action, (G, B, 1, A): the action token
        after it is dropped and the last block runs its query, MLP and head for that token alone.
        tasks: which task each group is (task-id conditioning; default: group g is task g).
        """
        g, b, _ = seg.mask.shape
        x = self.embed_drop(self.embed_ln(self._tokens(seg, False, tasks)))  # (G, B, kT, C)
        valid = seg.mask.repeat_interleave(self.per_step, dim=2).reshape(g * b, -1)
        if last_only:
            x, valid = x[:, :, :-1], valid[:, :-1]
        mask = attention_mask(valid, cache.valid)
        past = cache.kv or [None] * len(self.blocks)
        for i, (block, kv) in enumerate(zip(self.blocks, past, strict=True)):
            q, k, v = block.qkv(x, weights)
            if kv is not None:
                k, v = torch.cat([kv[0], k], dim=2), torch.cat([kv[1], v], dim=2)
            if last_only and i + 1 == len(self.blocks):
                x, q, mask = x[:, :, -1:], q[:, :, -1:], mask[:, :, -1:]
            x = block.attend(x, q, k, v, mask, weights)
        first_state = 1 if self.returns_to_go else 0
        state_tokens = x[:, :, -1:] if last_only else x[:, :, first_state::self.per_step]
        return self.predict_action(self.ln_f(state_tokens))

    def forward(self, seg: Segments, prompt: Segments, weights: Weights | None = None
                ) -> torch.Tensor:
        """Predicted actions (G, B, T, A) for every state token of `seg` (training)."""
        return self.decode(seg, self.encode_prompt(prompt, weights), weights)

    def act(self, seg: Segments, cache: PromptCache, weights: Weights | None = None,
            tasks: torch.Tensor | None = None) -> torch.Tensor:
        """The action (G, B, A) for the last state of each window (evaluation); `tasks`: which
        task each group is, when not every task in order (episodes that ended left the batch)."""
        return self.decode(seg, cache, weights, last_only=True, tasks=tasks)[:, :, 0]


def per_task_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(G,) mean squared action error over the non-padded positions of each task group."""
    err = (pred.float() - target.float()).square().mean(-1) * mask  # (G, B, T)
    return err.sum((1, 2)) / mask.sum((1, 2)).clamp(min=1)
