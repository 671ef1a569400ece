"""The names of a run's checkpoint files, and which of them a failed run can go on from.

Torch-free, so the daemon can look at checkpoints without loading them
(``engine.run.checkpoint`` writes and reads them, in workers only).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

FINAL = "final.pt"
_AT_STEP = re.compile(r"(release|step|auto)-(\d+)\.pt")
_AUTO = re.compile(r"auto-(\d+)\.pt")


def release_name(step: int) -> str:
    """The checkpoint a pause with release writes."""
    return f"release-{step}.pt"


def fork_name(step: int) -> str:
    """The checkpoint a fork asks its parent for."""
    return f"step-{step}.pt"


def auto_name(step: int) -> str:
    """The checkpoint a run writes on its own (``--checkpoint-every``); only the newest
    is kept (``drop_older_autos``)."""
    return f"auto-{step}.pt"


def is_auto(path: Path) -> bool:
    """Whether ``path`` is one of the checkpoints a run writes on its own."""
    return _AUTO.fullmatch(path.name) is not None


def drop_older_autos(directory: Path, keep: Path) -> None:
    """Delete the run's own checkpoints older than ``keep`` (which is whole on disk by
    now): they are there only to go on from, and the newest does that best."""
    try:
        paths = list(directory.iterdir())
    except OSError:
        return
    for path in paths:
        if path != keep and is_auto(path):
            path.unlink(missing_ok=True)


def latest_complete(directory: Path) -> tuple[int, Path] | None:
    """The checkpoint at the highest step that was written whole, with that step.

    Checkpoints are renamed into place only once written and synced, so a name
    is a finished file; the zip check (torch saves zip archives, whose index
    sits at the end) also turns away one cut short by a crash of the machine.
    """
    best: tuple[int, Path] | None = None
    try:
        paths = list(directory.iterdir())
    except OSError:
        return None
    for path in paths:
        match = _AT_STEP.fullmatch(path.name)
        if match is None:
            continue
        step = int(match.group(2))
        if (best is None or step > best[0]) and zipfile.is_zipfile(path):
            best = (step, path)
    return best
