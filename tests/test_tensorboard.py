"""TensorBoard logs through a real daemon: ``run --logdir`` follows the event files a
command writes, ``import`` makes finished runs of existing ones. The files are written by
torch's ``SummaryWriter`` and by tensorboardX, as users' scripts write them."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import TERMINAL, Engine

pytest.importorskip("tensorboard")

WRITERS = {
    "torch": "from torch.utils.tensorboard import SummaryWriter",
    "tensorboardX": "from tensorboardX import SummaryWriter",
}
# The directory each writes an add_scalars("acc", {"train": ...}) curve to.
CURVE_DIR = {"torch": "acc_train", "tensorboardX": "acc/train"}

# Writes its curves to tb/main with set wall times, and prints a misleading "loss"
# line every step: the event files, not the output, must be what is recorded.
SCRIPT = textwrap.dedent(
    """
    import time
    WRITER
    w = SummaryWriter("tb/main")
    for step in range(30):
        w.add_scalar("Loss/train", 1.0 / (step + 1), step, walltime=1.7e9 + step)
        if step % 10 == 0:
            w.add_scalar("Loss/val", 2.0 / (step + 1), step, walltime=1.7e9 + step)
        w.flush()
        print(f"step {step} loss 99.0", flush=True)
        time.sleep(0.03)
    w.add_scalars("acc", {"train": 0.5, "val": 0.25}, 29, walltime=1.7e9 + 29)
    w.close()
    """
)


def f32(value: float) -> float:
    """What a user's float reads back as from an event file: the float32 it was stored as,
    by its shortest text (0.1 stays 0.1)."""
    return float(str(np.float32(value)))


def series(engine: Engine, run_id: str) -> dict[str, list[tuple[int, float, float]]]:
    """Every point of a run: name -> [(step, value, time)] in step order."""
    with engine.client() as client:
        points = client.all_metrics(run_id)
    found: dict[str, list[tuple[int, float, float]]] = {}
    for step, key, value, when in points:
        found.setdefault(key, []).append((int(step), value, when))
    return {k: sorted(v) for k, v in found.items()}


def expected_curves(prefix: str) -> dict[str, list[tuple[int, float, float]]]:
    return {
        f"{prefix}Loss/train": [(s, f32(1.0 / (s + 1)), 1.7e9 + s) for s in range(30)],
        f"{prefix}Loss/val": [(s, f32(2.0 / (s + 1)), 1.7e9 + s) for s in (0, 10, 20)],
    }


def write_logs(tmp_path: Path, writer: str, name: str) -> Path:
    """A finished run's logs, written by ``writer`` under tmp_path/logs/name."""
    script = tmp_path / f"write_{name}.py"
    script.write_text(SCRIPT.replace("WRITER", WRITERS[writer]).replace("tb/main", f"logs/{name}"))
    import subprocess

    subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    return tmp_path / "logs" / name


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_run_with_logdir_records_the_event_files_not_the_output(
    engine: Engine, tmp_path: Path, writer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An earlier run's event file in the same logdir is not this run's: it is left alone.
    old = write_logs(tmp_path, writer, "old")
    (tmp_path / "tb").mkdir()
    old.rename(tmp_path / "tb" / "old")
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.replace("WRITER", WRITERS[writer]))
    monkeypatch.chdir(tmp_path)
    result = engine.cli("run", "--json", "--logdir", "tb", "--", sys.executable, str(script))
    assert result.code == 0, result.err
    run_id = result.json()["id"]
    run = engine.wait_state(run_id, *TERMINAL, timeout=120)
    assert run["state"] == "finished"
    assert run["config"]["logdir"] == str(tmp_path / "tb")  # made absolute by the CLI
    got = series(engine, run_id)
    want = expected_curves("main/")
    # add_scalars writes one directory per curve: its name goes before the tag
    curve = CURVE_DIR[writer]
    want[f"main/{curve}/acc"] = [(29, 0.5, 1.7e9 + 29)]
    want[f"main/{curve.replace('train', 'val')}/acc"] = [(29, 0.25, 1.7e9 + 29)]
    assert got == want  # exact names, steps, values and wall times; no "loss" from stdout
    assert run["step"] == 29
    # the table's LOSS is the training curve
    (row,) = [r for r in engine.all_runs() if r["id"] == run_id]
    assert row["last"]["main/Loss/train"] == f32(1 / 30)


def test_run_with_logdir_and_no_event_files_keeps_what_the_output_says(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = "print('step 1 loss 1.5'); print('step 2 loss 1.25')"
    result = engine.cli("run", "--json", "--logdir", "tb", "--", sys.executable, "-c", code)
    assert result.code == 0, result.err
    run = engine.wait_state(result.json()["id"], *TERMINAL, timeout=60)
    assert run["state"] == "finished"
    assert engine.losses(run["id"]) == {1: 1.5, 2: 1.25}


def test_import_makes_each_directory_of_event_files_a_finished_run(
    engine: Engine, tmp_path: Path
) -> None:
    write_logs(tmp_path, "torch", "lr-1e-3")
    write_logs(tmp_path, "tensorboardX", "lr-3e-4")
    result = engine.cli("import", "--json", str(tmp_path / "logs"))
    assert result.code == 0, result.err
    made = {r["name"]: r for r in result.json()}
    # each writer's root directory, and one per add_scalars curve below it
    assert sorted(made) == sorted(
        f"{name}{sub}"
        for name, writer in (("lr-1e-3", "torch"), ("lr-3e-4", "tensorboardX"))
        for sub in ("", f"/{CURVE_DIR[writer]}", f"/{CURVE_DIR[writer].replace('train', 'val')}")
    )
    for name in ("lr-1e-3", "lr-3e-4"):
        run: dict[str, Any] = made[name]
        assert run["state"] == "finished" and run["kind"] == "imported"
        assert series(engine, run["id"]) == expected_curves("")
        assert run["step"] == 29 and run["points"] == 33
        assert set(run["refusals"]) == {"fork", "release"}
    assert series(engine, made["lr-3e-4/acc/val"]["id"]) == {"acc": [(29, 0.25, 1.7e9 + 29)]}
    # the same directory again adds nothing: its runs are already here
    again = engine.cli("import", str(tmp_path / "logs"))
    assert again.code == 0 and "already imported" in again.out
    assert len(engine.all_runs()) == 6
    # there is nothing to fork or restart
    fork = engine.cli("fork", made["lr-1e-3"]["id"], "lr=1")
    assert fork.code == 1 and "imported from TensorBoard logs" in fork.err
    restart = engine.cli("restart", made["lr-1e-3"]["id"])
    assert restart.code == 1 and restart.err.endswith(
        "imported from TensorBoard logs: there is no command or workload to run again\n")
    assert len(engine.all_runs()) == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "/no/such/dir"], "no such directory"),
        (["import", "EMPTY"], "no TensorBoard event files"),
    ],
)
def test_a_bad_import_is_one_line_and_makes_nothing(
    engine: Engine, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no events here")
    argv = [a.replace("EMPTY", str(tmp_path / "empty")) for a in args]
    result = engine.cli(*argv)
    assert result.code == 2 and message in result.err
    assert len(result.err.strip().splitlines()) == 1
    time.sleep(0.1)
    assert engine.all_runs() == []


def test_tensor_scalars_as_tf2_writes_them_are_read_and_other_summaries_are_not(
    tmp_path: Path,
) -> None:
    from torch.utils.tensorboard import SummaryWriter

    from engine.common.tb_events import EventDir

    writer = SummaryWriter(str(tmp_path))
    for step in range(3):
        writer.add_scalar("lr", 0.1 * (step + 1), step, walltime=1.7e9 + step, new_style=True)
        writer.add_histogram("weights", np.arange(10.0), step, walltime=1.7e9 + step)
        writer.add_text("note", "not a number", step, walltime=1.7e9 + step)
    writer.close()
    points = EventDir(tmp_path).poll()
    assert points == [(s, "lr", f32(0.1 * (s + 1)), 1.7e9 + s) for s in range(3)]
    # double_precision: a float64 tensor keeps every digit
    exact = SummaryWriter(str(tmp_path / "exact"))
    exact.add_scalar("x", 1 / 3, 0, walltime=1.7e9, new_style=True, double_precision=True)
    exact.close()
    assert EventDir(tmp_path / "exact").poll() == [(0, "x", 1 / 3, 1.7e9)]


def test_a_damaged_event_file_is_said_in_the_log_and_the_output_still_counts(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "damaged.py"
    script.write_text(textwrap.dedent(
        """
        import time
        from tensorboardX.record_writer import RecordWriter
        writer = RecordWriter("tb/events.out.tfevents.1.bad")
        writer.write(b"\\xff\\xff not an Event")  # a whole record, but no Event inside
        writer.flush()
        time.sleep(1.5)
        print("step 1 loss 1.5", flush=True)
        print("step 2 loss 1.25", flush=True)
        """
    ))
    (tmp_path / "tb").mkdir()
    monkeypatch.chdir(tmp_path)
    result = engine.cli("run", "--json", "--logdir", "tb", "--", sys.executable, str(script))
    assert result.code == 0, result.err
    run = engine.wait_state(result.json()["id"], *TERMINAL, timeout=60)
    assert run["state"] == "finished"  # the command was never disturbed
    assert engine.losses(run["id"]) == {1: 1.5, 2: 1.25}
    stderr = engine.cli("logs", run["id"], "--stderr").out
    assert f"traintop: cannot read the event files under {tmp_path / 'tb'}" in stderr


def test_import_passes_over_a_damaged_directory_in_one_line_and_imports_the_rest(
    engine: Engine, tmp_path: Path
) -> None:
    from tensorboardX.record_writer import RecordWriter

    write_logs(tmp_path, "torch", "good")
    (tmp_path / "logs" / "bad").mkdir()
    writer = RecordWriter(str(tmp_path / "logs" / "bad" / "events.out.tfevents.1.bad"))
    writer.write(b"\xff\xff not an Event")
    writer.close()
    result = engine.cli("import", "--json", str(tmp_path / "logs"))
    assert result.code == 1
    (line,) = result.err.strip().splitlines()  # one line, naming the damaged directory
    assert line.startswith(f"traintop: cannot read the event files in {tmp_path / 'logs/bad'}:")
    names = sorted(r["name"] for r in result.json())
    assert names == ["good", "good/acc_train", "good/acc_val"]
    assert len(engine.all_runs()) == 3  # nothing of the damaged one
