"""Run directories are shared (results/ is made of them), so nothing in one may run code: a
checkpoint whose unpickling would execute a payload is refused by every command that can meet
it, and the payload never runs."""
from __future__ import annotations

import builtins
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from mtrl_bench.cli import main
from mtrl_bench.runs import RunDir, RunFileError, load_plain


class Payload:
    """Unpickling this calls open(marker, "w"): a file appears if the loader runs code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def _crafted_copy(finished_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    exp = tmp_path / "exp"
    shutil.copytree(finished_run, exp)
    marker = tmp_path / "payload-ran"
    state = torch.load(exp / "runs" / "run" / "checkpoint.pt", weights_only=True)
    state["model"] = Payload(marker)  # a plausible checkpoint with one poisoned entry
    torch.save(state, exp / "runs" / "run" / "checkpoint.pt")
    return exp, marker


def test_the_payload_runs_when_loaded_unsafely(finished_run, tmp_path):
    """The fixture is a real attack: the unsafe loader executes it (so the tests below can fail)."""
    exp, marker = _crafted_copy(finished_run, tmp_path)
    torch.load(exp / "runs" / "run" / "checkpoint.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("command", [
    ["eval", "{run}"],
    ["train", "--profile", "smoke", "--quiet", "--steps", "8", "--out", "{run}", "--resume",
     "--data-dir", "{data}"],
    ["report", "{exp}"],
    ["plot", "{run}"],
])
def test_every_command_refuses_a_crafted_checkpoint(command, finished_run, smoke_data, tmp_path,
                                                    capsys):
    exp, marker = _crafted_copy(finished_run, tmp_path)
    run = exp / "runs" / "run"
    if command[0] == "train":
        (run / "DONE").unlink()  # an unfinished run: resume reads the checkpoint
    argv = [a.format(run=run, exp=exp, data=smoke_data) for a in command]
    code = main(argv)
    err = capsys.readouterr().err
    assert not marker.exists(), f"{command[0]} ran the checkpoint's payload"
    if command[0] in ("eval", "train"):  # the two that read checkpoints say why they stop
        assert code not in (0, None)
        assert "checkpoint.pt: refused" in err and "could run code" in err, err


def test_the_api_refuses_it_too(finished_run, tmp_path):
    exp, marker = _crafted_copy(finished_run, tmp_path)
    with pytest.raises(RunFileError, match="refused"):
        RunDir(exp / "runs" / "run").load_checkpoint()
    with pytest.raises(pickle.UnpicklingError, match="could run code"):
        load_plain(exp / "runs" / "run" / "checkpoint.pt")
    assert not marker.exists()


def test_a_real_checkpoint_is_plain(finished_run):
    """What the trainer saves loads under the safe loader, with every key a resume needs."""
    state = RunDir(finished_run / "runs" / "run").load_checkpoint()
    assert state["step"] == 4 and isinstance(state["model"], dict)
