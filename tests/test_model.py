"""The Prompt-DT model: the evaluation fast path agrees with the training forward."""
import pytest
import torch

from mtrl_bench.config import ModelConfig
from mtrl_bench.model import PromptDT, Segments

G, B, T, P, S, A = 3, 4, 5, 2, 39, 4


def segments(length: int, pad: int, gen: torch.Generator) -> Segments:
    """Random windows whose first `pad` steps are left padding (zeros, mask False)."""
    mask = torch.ones(G, B, length, dtype=torch.bool)
    mask[:, :, :pad] = False
    return Segments(torch.randn(G, B, length, S, generator=gen) * mask[..., None],
                    torch.rand(G, B, length, A, generator=gen) * mask[..., None],
                    torch.randn(G, B, length, 1, generator=gen),
                    torch.randint(0, 500, (G, B, length), generator=gen), mask)


CONDITIONED = {"prompt": {}, "task-id": {"conditioning": "task-id", "num_tasks": G},
               "task-id, no returns": {"conditioning": "task-id", "num_tasks": G,
                                       "returns_to_go": False}}


@pytest.fixture(params=list(CONDITIONED))
def model(request) -> PromptDT:
    torch.manual_seed(0)
    return PromptDT(ModelConfig(embed_dim=32, n_layer=2, n_head=2, context_len=T,
                                prompt_len=P), S, A, **CONDITIONED[request.param]).eval()


def task_weights(model: PromptDT, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {k: w.detach() * (torch.rand(G, *w.shape, generator=gen) < 0.8)
            for k, w in model.maskable_parameters().items()}


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_act_with_a_cached_prompt_equals_the_full_forward(model, pad, masked):
    gen = torch.Generator().manual_seed(1)
    seg, prompt = segments(T, pad, gen), segments(P, 1, gen)
    weights = task_weights(model, gen) if masked else None
    with torch.no_grad():
        full = model(seg, prompt, weights)[:, :, -1]
        fast = model.act(seg, model.encode_prompt(prompt, weights), weights)
    assert fast.shape == (G, B, A)
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-6)


def test_predictions_ignore_the_future_and_the_padding(model):
    gen = torch.Generator().manual_seed(2)
    seg, prompt = segments(T, 2, gen), segments(P, 0, gen)
    with torch.no_grad():
        before = model(seg, prompt)
        seg.actions[:, :, -1] += 1.0  # the last action comes after every state token
        seg.states[:, :, -1] += 1.0  # the last state only reaches the last prediction
        seg.states[:, :, :2] += 5.0  # padding is masked out
        seg.rtg[:, :, :2] -= 5.0
        after = model(seg, prompt)
    # positions 2..T-2: valid, before the last state (padded positions predict nothing used)
    torch.testing.assert_close(after[:, :, 2:-1], before[:, :, 2:-1], rtol=0, atol=1e-6)
    assert (after[:, :, -1] - before[:, :, -1]).abs().max() > 1e-3


def test_task_id_conditioning_reads_the_task_not_the_prompt():
    torch.manual_seed(0)
    model = PromptDT(ModelConfig(embed_dim=32, n_layer=2, n_head=2, context_len=T,
                                 prompt_len=P), S, A, conditioning="task-id", num_tasks=G).eval()
    assert not hasattr(model, "prompt_embed_state")  # no prompt parameters to train
    gen = torch.Generator().manual_seed(3)
    seg, prompt = segments(T, 0, gen), segments(P, 0, gen)
    same = Segments(*(x[:1].expand(G, *x.shape[1:]).clone() for x in (
        seg.states, seg.actions, seg.rtg, seg.timesteps, seg.mask)))  # one window, every task
    with torch.no_grad():
        out = model(same, prompt)
        other_prompt = model(same, segments(P, 0, gen))
    torch.testing.assert_close(other_prompt, out, rtol=0, atol=0)  # the prompt is not read
    assert (out[0] - out[1]).abs().max() > 1e-4  # the task embedding is


def test_without_returns_to_go_the_returns_are_not_read():
    torch.manual_seed(0)
    model = PromptDT(ModelConfig(embed_dim=32, n_layer=2, n_head=2, context_len=T,
                                 prompt_len=P), S, A, conditioning="task-id", num_tasks=G,
                     returns_to_go=False).eval()
    assert not hasattr(model, "embed_return")
    gen = torch.Generator().manual_seed(4)
    seg, prompt = segments(T, 0, gen), segments(P, 0, gen)
    with torch.no_grad():
        before = model(seg, prompt)
        seg.rtg += 100.0
        after = model(seg, prompt)
    torch.testing.assert_close(after, before, rtol=0, atol=0)


@pytest.mark.parametrize("masked", [False, True])
def test_a_batch_without_its_first_task_acts_as_the_full_batch(model, masked):
    """Evaluation drops a task's group once all its episodes ended: the groups left (tasks 1
    and 2) must act as they did in the full batch, whatever the conditioning (a task-id model
    once read group g as task g, giving task 1 the embedding of task 0)."""
    from mtrl_bench.evaluation import TransformerPolicy

    gen = torch.Generator().manual_seed(4)
    seg, prompt = segments(T, 0, gen), segments(P, 0, gen)
    policy = TransformerPolicy(model, task_weights(model, gen) if masked else None)
    everyone, rest = torch.arange(G), torch.tensor([1, 2])
    part = Segments(*(getattr(seg, f)[rest] for f in Segments.__annotations__))
    part_prompt = Segments(*(getattr(prompt, f)[rest] for f in Segments.__annotations__))
    with torch.no_grad():
        full = policy.act(seg, policy.encode_prompt(prompt, everyone), everyone)
        alone = policy.act(part, policy.encode_prompt(part_prompt, rest), rest)
    torch.testing.assert_close(alone, full[1:], rtol=0, atol=1e-6)
