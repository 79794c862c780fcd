"""The shared trainer on real smoke-sized data: determinism, resume, masks, failures."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from mtrl_bench.api import ConfigMismatch, Run, load_datasets
from mtrl_bench.data import OfflineData
from mtrl_bench.masking import MaskStrategy
from mtrl_bench.model import per_task_loss
from mtrl_bench.runs import RunDir
from mtrl_bench.trainer import NonFiniteLoss, Trainer


@pytest.fixture
def smoke(smoke_data, monkeypatch, tmp_path):
    monkeypatch.setenv("MTRL_BENCH_DATA", str(smoke_data))

    def make(method="prompt-dt", name="run", **overrides):
        return Run.prepare(method, "mt5", "near-optimal", 0, "smoke",
                           {k.replace("__", "."): str(v) for k, v in overrides.items()},
                           execution={"device": "cpu", "progress": False}, out=tmp_path / name)
    return make


def _steps(cfg, n, strategy=None):
    data = OfflineData(load_datasets(cfg, progress=False), cfg.data, cfg.model)
    c = Trainer(cfg, data, torch.device("cpu"))
    if strategy is not None:
        c.strategy = strategy(c)
    records = [c.step() for _ in range(n)]
    return c, data, records


def test_same_seed_same_numbers(smoke):
    cfg = smoke().config
    a, _, ra = _steps(cfg, 4)
    b, _, rb = _steps(cfg, 4)
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]
    for (k, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(p, q), k
    cfg.seed = 1
    c, _, rc = _steps(cfg, 4)
    assert [r["loss"] for r in rc] != [r["loss"] for r in ra]


def test_loss_decreases_on_real_data(smoke):
    cfg = smoke(train__lr=1e-3, train__warmup_steps=1).config
    _, _, records = _steps(cfg, 60)
    first = sum(r["loss"] for r in records[:10]) / 10
    last = sum(r["loss"] for r in records[-10:]) / 10
    assert last < 0.85 * first



def _random_masks(values: tuple[float, ...], seed: int):
    """A strategy factory: per-task masks drawn uniformly from `values` (5 tasks of MT5)."""
    def make(c):
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(len(values), (5, c.layout.numel), generator=g)
        return MaskStrategy(torch.tensor(values)[idx])
    return make


def test_masked_update_is_mean_of_task_gradients_times_soft_mask(smoke):
    cfg = smoke().config
    c, data, _ = _steps(cfg, 0, _random_masks((0.0, 0.5, 1.0, 1.0), seed=3))
    c.model.eval()  # no dropout: both computations below see the same function
    seg, prompt = data.sample(np.random.default_rng(5), 2)
    weights = c.effective_weights(requires_grad=True)
    losses = per_task_loss(c.model(seg, prompt, weights), seg.actions, seg.mask)
    scale = c.layout.views(c.strategy.grad_scale())
    expected = {}
    for name in weights:  # every task's gradient on its own, then Eq. 7 by hand
        g = torch.stack([torch.autograd.grad(losses[i], weights[name], retain_graph=True)[0][i]
                         for i in range(len(losses))])
        expected[name] = (g * scale[name]).mean(0)
    c.optimizer.zero_grad(set_to_none=True)
    c._masked_backward(losses.mean(), weights)  # what a training step does
    for name, p in c.model.maskable_parameters().items():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-4, atol=1e-8)
        assert (p.grad[(scale[name] == 0).all(0)] == 0).all()  # masked for every task: no update


def test_masked_gradients_are_those_of_backward_bit_for_bit(smoke):
    """A masked step takes its gradients with autograd.grad and sums task gradients in their
    own memory layout (a speed-up): every parameter must get exactly the bits that backward()
    and a plain sum over tasks give, stored contiguous as backward() stores them."""
    c, data, _ = _steps(smoke().config, 0, _random_masks((0.0, 0.5, 1.0, 1.0), seed=3))
    c.model.eval()
    seg, prompt = data.sample(np.random.default_rng(5), 2)

    def loss(weights):
        return per_task_loss(c.model(seg, prompt, weights), seg.actions, seg.mask).mean()

    reference = c.effective_weights(requires_grad=True)
    loss(reference).backward()
    scale = c.layout.views(c.strategy.grad_scale())
    expected = {n: p.grad.clone() for n, p in c.model.named_parameters() if p.grad is not None}
    expected |= {n: (reference[n].grad * scale[n]).sum(0) for n in reference}
    c.optimizer.zero_grad(set_to_none=True)
    weights = c.effective_weights(requires_grad=True)
    task_grads = c._masked_backward(loss(weights), weights)
    assert task_grads["blocks.0.c_fc.weight"].stride(-1) != 1  # the case this is about
    for name, p in c.model.named_parameters():
        if name in expected:
            assert p.grad.is_contiguous() and torch.equal(p.grad, expected[name]), name
        else:
            assert p.grad is None, name
    for name, g in task_grads.items():
        assert torch.equal(g, reference[name].grad), name


def test_entries_masked_for_a_task_do_not_affect_its_forward_pass(smoke):
    cfg = smoke().config

    c, data, _ = _steps(cfg, 1, _random_masks((0.0, 1.0, 1.0), seed=1))
    c.model.eval()
    seg, prompt = data.sample(np.random.default_rng(0), 2)
    before = c.model(seg, prompt, c.effective_weights())
    dropped = c.layout.views(1 - c.strategy.forward_mask())
    with torch.no_grad():
        for name, p in c.model.maskable_parameters().items():
            p += 10.0 * dropped[name][0]  # perturb only entries task 0 does not use
    after = c.model(seg, prompt, c.effective_weights())
    torch.testing.assert_close(after[0], before[0])
    assert not torch.allclose(after[1:], before[1:])


def _final_state(run: RunDir):
    state = run.load_checkpoint()
    return state["model"], [r for r in run.metrics() if r["kind"] == "train"]


def test_resume_equals_uninterrupted(smoke):
    full_run, part_run = smoke(name="full"), smoke(name="part")
    full, part = full_run.dir, part_run.dir
    full_run.train()
    assert part_run.train(stop_after=12) is None
    assert part.status()["state"] == "interrupted" and not part.complete
    result = part_run.train(resume=True)
    assert part.complete and result["success"] == full.metrics()[-1]["success"]
    (ma, la), (mb, lb) = _final_state(full), _final_state(part)
    assert la == lb
    for k in ma:
        assert torch.equal(ma[k], mb[k]), k


@pytest.mark.slow
def test_kill_and_resume_with_the_cli(smoke, smoke_data, tmp_path):
    args = ["--profile", "smoke", "--device", "cpu", "--quiet", "--set", "train.steps=1000",
            "--set", "train.checkpoint_interval=50"]
    env = {**os.environ, "MTRL_BENCH_DATA": str(smoke_data)}
    cmd = [sys.executable, "-m", "mtrl_bench.cli", "train", *args]
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "killed")], env=env)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = RunDir(tmp_path / "killed")
    assert not killed.complete, "the run finished before it could be killed"
    again = subprocess.run([*cmd, "--out", str(killed.path)], env=env, capture_output=True,
                           text=True)
    assert again.returncode == 2 and "--resume" in again.stderr  # refuses to clobber
    resumed = subprocess.run([*cmd, "--out", str(killed.path), "--resume"], env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    clean = subprocess.run([*cmd, "--out", str(tmp_path / "clean")], env=env,
                           capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    (ma, la), (mb, lb) = _final_state(killed), _final_state(RunDir(tmp_path / "clean"))
    assert la == lb
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_resume_with_a_different_config_is_refused(smoke):
    run = smoke()
    run.train(stop_after=10)
    run.config.train.lr = 0.5
    with pytest.raises(ConfigMismatch, match="train.lr: 0.0001 != 0.5"):
        run.train(resume=True)


def test_nan_loss_marks_the_run_failed_and_keeps_the_checkpoint(smoke, monkeypatch):
    run_ = smoke()
    run = run_.dir
    import mtrl_bench.trainer as trainer

    calls = {"n": 0}
    real = trainer.per_task_loss

    def poisoned(*args):
        calls["n"] += 1
        out = real(*args)
        return out * float("nan") if calls["n"] == 15 else out

    monkeypatch.setattr(trainer, "per_task_loss", poisoned)
    with pytest.raises(NonFiniteLoss, match="step 15"):
        run_.train()
    status = run.status()
    assert status["state"] == "failed" and status["step"] == 15
    assert run.load_checkpoint()["step"] == 10  # the last good checkpoint survives
    assert not run.complete


def test_execution_settings_never_change_which_run_it_is(smoke_data, tmp_path):
    """Device, threads and amp are recorded, not hashed: one directory, trained once."""
    env = {**os.environ, "MTRL_BENCH_DATA": str(smoke_data)}
    base = [sys.executable, "-m", "mtrl_bench.cli", "train", "--profile", "smoke", "--quiet",
            "--runs", str(tmp_path)]
    outputs = []
    for extra in (["--device", "cpu"], ["--device", "auto"], ["--set", "train.threads=2"],
                  ["--threads", "2", "--amp", "none"]):
        done = subprocess.run([*base, *extra], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1
    assert all("already complete" in out for out in outputs[1:]) and "already" not in outputs[0]
    manifest = json.loads((runs[0] / "manifest.json").read_text())
    assert [e["device"] for e in manifest["executions"]] == ["cpu"]  # trained once, on the CPU
    assert "device" not in json.loads((runs[0] / "config.json").read_text())


class _Flip(MaskStrategy):
    """At every update, task 0 switches its first `k` entries off and task 1 its first `k` on."""

    k = 7

    def update(self, ctx):
        self.masks[0, : self.k] = 0.0
        self.masks[1, : self.k] = 1.0
        return {}


def test_steps_between_updates_use_the_masks_of_the_last_update(smoke):
    """The forward mask and gradient scale are built once per update and reused: the step after
    an update runs with the new masks, and the trainer logs how many entries each task's update
    switched off (`masked`) and on (`restored`)."""
    cfg = smoke(train__mask_interval=2).config

    def flip(c):
        masks = torch.ones(5, c.layout.numel)
        masks[1, : _Flip.k] = 0.0
        return _Flip(masks)

    c, _, records = _steps(cfg, 1, flip)
    name = next(iter(c.model.maskable_parameters()))
    assert bool((c.effective_weights()[name][0].flatten()[: _Flip.k] != 0).all())
    record = c.step()  # step 2: the update
    assert record["mask"]["masked"] == [7.0, 0.0, 0.0, 0.0, 0.0]
    assert record["mask"]["restored"] == [0.0, 7.0, 0.0, 0.0, 0.0]
    eff = c.effective_weights()[name]
    assert bool((eff[0].flatten()[: _Flip.k] == 0).all())  # task 0 now runs without them
    assert bool((eff[1].flatten()[: _Flip.k] != 0).all())  # task 1 with them
    assert "masked" not in c.step().get("mask", {})  # step 3: no update, nothing logged


def test_tensorboard_shows_what_the_metrics_log_holds(tmp_path, smoke_data):
    """With the extra installed and execution.tensorboard on, a run's loss, evaluation and mask
    activity are TensorBoard scalars at the steps of its metrics log."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mtrl_bench.api import Run
    from mtrl_bench.runs import RunDir

    run = Run.prepare("socodt", "mt5", "near-optimal", 0, "smoke", {"train.eval_interval": 10},
                      execution={"data_dir": str(smoke_data), "progress": False,
                                 "tensorboard": True}, out=tmp_path / "run")
    run.train()
    board = EventAccumulator(str(tmp_path / "run" / "tb"))
    board.Reload()
    tags = set(board.Tags()["scalars"])
    assert {"train/loss", "train/lr", "eval/success", "mask/density"} <= tags
    logged = [r for r in RunDir(tmp_path / "run").metrics() if r["kind"] == "train"]
    assert [e.step for e in board.Scalars("train/loss")] == [r["step"] for r in logged]
    assert [e.value for e in board.Scalars("train/loss")] == pytest.approx(
        [r["loss"] for r in logged], rel=1e-5)  # the log keeps 6 significant digits
    assert [e.step for e in board.Scalars("eval/success")] == [10, 20]
