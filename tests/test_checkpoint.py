"""Checkpoints and the Run object in this process: round trips, RNG, tensor metrics."""

from __future__ import annotations

import errno
import io
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from engine.run.checkpoint import load_checkpoint, restore, save_checkpoint
from engine.run.run_api import Run, RunConfig
from engine.run.workloads import charlm
from engine.rundir.disk_space import out_of_space


def _draws() -> tuple[list[float], list[float], list[float]]:
    return torch.rand(3).tolist(), [random.random() for _ in range(3)], list(np.random.rand(3))


def test_round_trip_restores_state_and_every_rng(tmp_path: Path) -> None:
    model = nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(8, 4)).sum().backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    gen = torch.Generator().manual_seed(5)
    tracked = {"model": model, "optimizer": optimizer, "data": gen}
    path = tmp_path / "ckpt" / "a.pt"
    save_checkpoint(path, 7, tracked, RunConfig(lr=0.1))
    expected = _draws(), torch.rand(2, generator=gen).tolist()
    assert not list(path.parent.glob(".*tmp"))  # no temp file left behind

    model2 = nn.Linear(4, 2)
    optimizer2 = torch.optim.AdamW(model2.parameters(), lr=0.5)
    gen2 = torch.Generator()
    ckpt = load_checkpoint(path)
    assert (ckpt["step"], ckpt["config"]) == (7, {"lr": 0.1})
    restore(ckpt, {"model": model2, "optimizer": optimizer2, "data": gen2})
    assert (_draws(), torch.rand(2, generator=gen2).tolist()) == expected
    assert torch.equal(model.weight, model2.weight)
    assert optimizer2.state_dict()["param_groups"][0]["lr"] == 0.1


def _run(tmp_path: Path, config: dict[str, object]) -> Run:
    launch = {"run_id": "r", "name": "r", "generation": 3, "workload": "charlm",
              "config": config, "device": "cpu", "resume_from": None, "control_offset": 0}
    return Run(tmp_path, launch)


def test_config_attribute_access_and_tensor_metrics(tmp_path: Path) -> None:
    run = _run(tmp_path, {"lr": 0.5})
    assert run.config.lr == run.config["lr"] == 0.5
    weight = torch.ones(2, requires_grad=True)
    for _ in run.steps(3):
        run.log(loss=(weight * 2).sum(), vec=torch.tensor([1.0, 3.0]), n=4)
    lines = [json.loads(line) for line in (tmp_path / "spool.jsonl").read_text().splitlines()]
    points = [p[:3] for r in lines if r["t"] == "metrics" for p in r["points"]]
    assert points[:3] == [[0, "loss", 4.0], [0, "vec", 2.0], [0, "n", 4.0]]
    assert {r["gen"] for r in lines} == {3}
    assert lines[-1]["state"] == "finished" and lines[-1]["checkpoint"] is None


def test_charlm_trains_a_few_steps(tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("hello traintop, " * 200)
    config = {"steps": 4, "lr": 3e-3, "batch": 4, "block": 16, "layers": 1, "d_model": 16,
              "heads": 2, "dropout": 0.1, "weight_decay": 0.0, "seed": 0, "warmup": 2,
              "eval_every": 2, "text": str(text)}
    run = _run(tmp_path, config)
    charlm.train(run)
    lines = [json.loads(line) for line in (tmp_path / "spool.jsonl").read_text().splitlines()]
    keys = {p[1] for r in lines if r["t"] == "metrics" for p in r["points"]}
    assert keys == {"loss", "lr", "val_loss"}
    assert Path(lines[-1]["checkpoint"]).name == "final.pt"


def _sgd(lr: float) -> tuple[nn.Linear, torch.optim.SGD]:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def test_restore_keeps_hyperparameters_a_fork_overrides(tmp_path: Path) -> None:
    from engine.run.checkpoint import optimizer_hparams

    model, optimizer = _sgd(0.1)
    initial = {"optimizer": optimizer_hparams(optimizer) or []}
    model(torch.ones(2, 3)).sum().backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    optimizer.param_groups[0]["lr"] = 0.05  # as a scheduler would have moved it
    path = tmp_path / "c.pt"
    save_checkpoint(path, 1, {"model": model, "optimizer": optimizer}, {}, initial)

    same_model, same = _sgd(0.1)  # no override: the checkpoint's scheduled lr comes back
    restore(load_checkpoint(path), {"model": same_model, "optimizer": same})
    assert same.param_groups[0]["lr"] == 0.05
    forked_model, forked = _sgd(0.3)  # lr overridden: the new value wins
    restore(load_checkpoint(path), {"model": forked_model, "optimizer": forked})
    assert forked.param_groups[0]["lr"] == 0.3
    assert forked.param_groups[0]["momentum"] == 0.9
    assert torch.equal(forked.state_dict()["state"][0]["momentum_buffer"],
                       optimizer.state_dict()["state"][0]["momentum_buffer"])


def _scheduled(lr: float) -> tuple[nn.Linear, torch.optim.SGD, torch.optim.lr_scheduler.StepLR]:
    model, optimizer = _sgd(lr)
    return model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)


def _train(model: nn.Linear, optimizer: torch.optim.SGD, scheduler: object, steps: int) -> None:
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.ones(2, 3)).sum().backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        scheduler.step()  # type: ignore[attr-defined]


def test_a_fork_with_a_new_lr_rescales_its_lr_schedule(tmp_path: Path) -> None:
    from engine.run.checkpoint import optimizer_hparams

    model, optimizer, scheduler = _scheduled(0.1)
    initial = {"optimizer": optimizer_hparams(optimizer) or []}
    _train(model, optimizer, scheduler, 5)  # lr: 0.1 halved twice
    tracked = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    path = tmp_path / "c.pt"
    save_checkpoint(path, 5, tracked, {}, initial)
    assert optimizer.param_groups[0]["lr"] == 0.025

    same = _scheduled(0.1)  # no override: bit for bit the parent's schedule
    restore(load_checkpoint(path), dict(zip(tracked, same, strict=True)))
    assert same[1].param_groups[0]["lr"] == 0.025 and same[2].base_lrs == [0.1]

    forked = _scheduled(0.4)  # lr=0.4: the same point of the schedule, four times higher
    restore(load_checkpoint(path), dict(zip(tracked, forked, strict=True)))
    assert forked[1].param_groups[0]["lr"] == pytest.approx(0.1)
    assert forked[2].base_lrs == [0.4]
    _train(*forked, 1)  # step 6: the schedule halves again, from the new base
    _train(model, optimizer, scheduler, 1)
    assert forked[1].param_groups[0]["lr"] == pytest.approx(4 * optimizer.param_groups[0]["lr"])


class _FullDisk(io.RawIOBase):
    """A file on a disk that fills after ``room`` bytes: its writes then raise ENOSPC."""

    def __init__(self, room: int) -> None:
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return len(data)


def test_a_checkpoint_cut_by_a_full_disk_counts_as_a_full_disk() -> None:
    """torch.save wraps its file's ENOSPC in a RuntimeError: a release or final checkpoint
    must still wait for room (when_room), not end the run, and a skipped checkpoint of
    the run's own must say the disk is full."""
    with pytest.raises(RuntimeError) as caught:
        torch.save({"w": torch.zeros(10_000)}, _FullDisk(1000))
    assert not isinstance(caught.value, OSError)
    assert out_of_space(caught.value)
    assert not out_of_space(RuntimeError("a bug, not a disk"))
    assert not out_of_space(OSError(errno.EACCES, "denied"))
