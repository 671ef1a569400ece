"""Atomic checkpoints of tracked objects plus every RNG state, loadable with weights_only.

A checkpoint is a dict::

    {"format": 1, "step": int, "config": {...},
     "tracked": {name: state_dict or generator state},
     "initial_hparams": {optimizer name: [hyper-parameters of each group as built]},
     "rng": {"torch": tensor, "cuda": [tensor, ...] | None,
             "numpy": {...} | None, "python": {...}}}

Only tensors and plain Python values are stored, because
``torch.load(weights_only=True)`` refuses anything else (numpy arrays included).
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from engine.rundir.paths import private_opener, temporary_for

FORMAT = 1


def _state_of(obj: object) -> Any:
    """What a checkpoint stores for one tracked object."""
    if isinstance(obj, torch.Generator):
        return obj.get_state()
    state_dict = getattr(obj, "state_dict", None)
    if not callable(state_dict):
        raise TypeError(f"cannot checkpoint {type(obj).__name__}: it has no state_dict()")
    return state_dict()


def _load_state(obj: object, state: Any) -> None:
    if isinstance(obj, torch.Generator):
        obj.set_state(state)
        return
    load_state_dict = getattr(obj, "load_state_dict", None)
    if not callable(load_state_dict):
        raise TypeError(f"cannot restore {type(obj).__name__}: it has no load_state_dict()")
    # Optimizers cast their state to each parameter's device; modules copy in place.
    load_state_dict(state)


def optimizer_hparams(obj: object) -> list[dict[str, Any]] | None:
    """An optimizer's per-group hyper-parameters (lr, momentum...), or None if not one."""
    if not isinstance(obj, torch.optim.Optimizer):
        return None
    return [
        {key: value.clone() if isinstance(value, torch.Tensor) else value
         for key, value in group.items() if key != "params"}
        for group in obj.param_groups
    ]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    return bool(a == b)


def _keep_overridden_hparams(
    optimizer: object, fresh: list[dict[str, Any]] | None, initial: list[dict[str, Any]] | None
) -> None:
    """After loading an optimizer, put back the hyper-parameters the new config changed.

    A fork with ``lr`` overridden builds its optimizer with the new lr, and
    load_state_dict would silently bring back the parent's. A value that the
    new config did not change keeps the checkpoint's value, which a scheduler
    may have moved since, so a fork without overrides stays bit-exact.
    """
    if fresh is None or initial is None or len(fresh) != len(initial):
        return
    groups = optimizer.param_groups  # type: ignore[attr-defined]
    for group, new, old in zip(groups, fresh, initial, strict=True):
        scheduled_lr = group.get("lr")
        for key, value in new.items():
            if key in old and not _same(value, old[key]):
                group[key] = value
        # With an LR scheduler attached ('initial_lr' is its base), an overridden base
        # scales the lr the schedule had reached, instead of restarting the schedule.
        new_base, old_base = new.get("initial_lr"), old.get("initial_lr")
        if (
            isinstance(new_base, float) and isinstance(old_base, float)
            and isinstance(scheduled_lr, float) and old_base and new_base != old_base
        ):
            group["lr"] = scheduled_lr * new_base / old_base


def _rebase_scheduler(scheduler: object) -> None:
    """An LR scheduler follows its optimizer's (possibly overridden) base lr."""
    base_lrs = getattr(scheduler, "base_lrs", None)
    optimizer = getattr(scheduler, "optimizer", None)
    if not isinstance(base_lrs, list) or not isinstance(optimizer, torch.optim.Optimizer):
        return
    groups = optimizer.param_groups
    if len(groups) == len(base_lrs):
        scheduler.base_lrs = [  # type: ignore[attr-defined]
            group.get("initial_lr", base) for group, base in zip(groups, base_lrs, strict=True)
        ]


def rng_states() -> dict[str, Any]:
    """Every RNG state a training loop may draw from, as weights_only-safe values."""
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "cuda": None, "numpy": None}
    # Only when CUDA is already initialised: querying it would otherwise start a context.
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        states["cuda"] = torch.cuda.get_rng_state_all()
    np = sys.modules.get("numpy")
    if np is not None:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        states["numpy"] = {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype("int64")),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(gauss),
        }
    version, internal, gauss_next = random.getstate()
    states["python"] = {"version": version, "state": list(internal), "gauss_next": gauss_next}
    return states


def restore_rng_states(states: Mapping[str, Any]) -> None:
    """Put back the RNG states saved by :func:`rng_states`."""
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        # A checkpoint from more GPUs than we have: restore the ones that exist.
        for index, state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, index)
    np_state = states.get("numpy")
    if np_state is not None:
        import numpy as np  # only when the checkpoint holds numpy state

        keys = np_state["keys"].numpy().astype(np.uint32)
        np.random.set_state(
            (np_state["kind"], keys, np_state["pos"], np_state["has_gauss"],
             np_state["cached_gaussian"])
        )
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    path: Path | str,
    step: int,
    tracked: Mapping[str, object],
    config: Mapping[str, Any],
    initial_hparams: Mapping[str, list[dict[str, Any]]] | None = None,
) -> None:
    """Write a checkpoint atomically: readers see the old file or the whole new one.

    ``initial_hparams``: each tracked optimizer's hyper-parameters as it was built
    (see :func:`optimizer_hparams`), so a restore can tell which ones a fork changed.
    """
    path = Path(path)
    # Private whatever the umask: an attached script (traintop.init) keeps the user's.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "step": step,
        "config": dict(config),
        "tracked": {name: _state_of(obj) for name, obj in tracked.items()},
        "initial_hparams": dict(initial_hparams or {}),
        "rng": rng_states(),
    }
    tmp = temporary_for(path)
    try:
        with open(tmp, "wb", opener=private_opener) as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename itself must survive a crash, not only the file's bytes.
    _fsync_dir(path.parent)


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint onto the CPU, refusing anything but tensors and plain values."""
    ckpt = torch.load(path, weights_only=True, map_location="cpu")
    if not isinstance(ckpt, dict) or "step" not in ckpt or "rng" not in ckpt:
        raise ValueError(f"{path} is not a traintop checkpoint")
    return ckpt


def restore(ckpt: Mapping[str, Any], tracked: Mapping[str, object]) -> None:
    """Load each tracked object's state from ``ckpt``, then every RNG state."""
    saved = ckpt["tracked"]
    missing = [name for name in tracked if name not in saved]
    if missing:
        have = ", ".join(sorted(saved)) or "nothing"
        raise KeyError(f"checkpoint has no state for {', '.join(missing)} (it holds {have})")
    initial = ckpt.get("initial_hparams") or {}
    for name, obj in tracked.items():
        fresh = optimizer_hparams(obj)
        _load_state(obj, saved[name])
        _keep_overridden_hparams(obj, fresh, initial.get(name))
    for obj in tracked.values():  # after every load: a scheduler's state brings old bases
        _rebase_scheduler(obj)
    restore_rng_states(ckpt["rng"])
