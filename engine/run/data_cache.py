"""Prepared data of a built-in workload, kept under the state directory for the next start.

A fork or a resume of a charlm run would otherwise encode its ~2 MB of text
again (a third of a second on a small CPU) before its first step. What a
workload prepares from its config alone is deterministic, so it is stored once,
keyed by the workload's name, the config values it depends on and a stamp of
its source files, in ``cache/<workload>-<digest>.pt`` (see ``engine.rundir.paths``).

A cache that cannot be read is rebuilt, and one that cannot be written (a full
disk) is skipped: the cache never stops a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.rundir.paths import RunDir, private_opener, temporary_for
from engine.rundir.state_dir import UnsafeStateDir, ensure_private_dir


def cache_file(rundir: RunDir, workload: str, key: dict[str, Any]) -> Path:
    """Where the data ``workload`` prepares for ``key`` is kept."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return rundir.state.cache / f"{workload}-{digest}.pt"


def source_stamp(path: Path) -> list[int]:
    """Size and modification time of a source file: a changed file is a new key."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def load_or_build(
    rundir: RunDir, workload: str, key: dict[str, Any], build: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """``build()``'s tensors and lists, from the cache when the same key built them before."""
    import torch

    path = cache_file(rundir, workload, key)
    with contextlib.suppress(Exception):  # missing, damaged or from another torch: rebuild
        loaded: dict[str, Any] = torch.load(path, weights_only=True)
        return loaded
    data = build()
    with contextlib.suppress(OSError, UnsafeStateDir):
        ensure_private_dir(path.parent)
        tmp = temporary_for(path)
        try:
            with open(tmp, "wb", opener=private_opener) as f:
                torch.save(data, f)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return data
