"""TensorBoard event files, read with the ``tensorboard`` package's own reader.

``traintop run --logdir DIR`` follows the event files a command writes as they grow,
and ``traintop import DIR`` reads finished ones; both take every scalar with its exact
tag, step and wall time. The reader is the package's ``EventFileLoader`` (an optional
extra: ``pip install 'traintop[tensorboard]'``), imported only when logs are read, so
nothing else pays for it.

A tag keeps its name. Event files below the directory read (``add_scalars`` writes one
directory per curve, ``DIR/loss_train/``) prefix their tags with that directory, as
TensorBoard's run names do: ``loss_train/loss``.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

# The start of every event file's name, whoever wrote it (TF, torch, tensorboardX).
EVENT_FILE_MARK = "tfevents"
INSTALL_HINT = "pip install 'traintop[tensorboard]'"

# (step, tag, value, wall time): a point as the spool carries it.
Scalar = tuple[int, str, float, float]


class TensorBoardMissing(RuntimeError):
    """The ``tensorboard`` package is not installed."""


def require_tensorboard() -> None:
    """Raise ``TensorBoardMissing`` with the install line unless the reader is importable."""
    if importlib.util.find_spec("tensorboard") is None:
        raise TensorBoardMissing(f"reading TensorBoard logs needs the tensorboard package: "
                                 f"{INSTALL_HINT}")


def is_event_file(path: Path) -> bool:
    """Whether ``path`` is named like a TensorBoard event file."""
    return path.name.startswith("events.out.") and EVENT_FILE_MARK in path.name


def event_files(root: Path) -> list[Path]:
    """Every event file at any depth under ``root``, in name order (their names start with
    the time they were opened). Unreadable directories are passed over."""
    found: list[Path] = []
    try:
        for path in root.rglob(f"events.out.{EVENT_FILE_MARK}*"):
            if is_event_file(path) and path.is_file():
                found.append(path)
    except OSError:
        pass
    return sorted(found)


def run_dirs(root: Path) -> list[Path]:
    """The directories that hold event files themselves: each is a run, as TensorBoard
    shows them."""
    return sorted({path.parent for path in event_files(root)})


class EventDir:
    """The scalars of every event file under a directory, read as the files grow.

    ``recursive`` False reads only the files directly in ``root`` (one run of an
    import); True reads those below too, prefixing tags with their directory (a run's
    ``--logdir``). Files in ``skip`` (there before the run began) are never read.
    """

    def __init__(self, root: Path, recursive: bool = True, skip: Collection[Path] = ()) -> None:
        require_tensorboard()
        # The package logs a line per truncated record it will read again later.
        logging.getLogger("tensorboard").setLevel(logging.ERROR)
        self.root = root
        self.recursive = recursive
        self.skip = set(skip)
        self._loaders: dict[Path, Any] = {}
        self._scalar_tags: set[tuple[Path, str]] = set()  # (directory, tag) known scalar
        import numpy  # tensorboard's own dependency: here whenever it is

        self._float32 = numpy.float32

    def poll(self) -> list[Scalar]:
        """Every scalar written since the last poll, new files included."""
        for path in event_files(self.root):
            if path in self._loaders or path in self.skip:
                continue
            if not self.recursive and path.parent != self.root:
                continue
            self._loaders[path] = _loader(path)
        points: list[Scalar] = []
        for path, loader in self._loaders.items():
            points.extend(self._scalars(path, loader.Load()))
        return points

    def _scalars(self, path: Path, events: Iterator[Any]) -> Iterator[Scalar]:
        prefix = "" if path.parent == self.root else path.parent.relative_to(self.root).as_posix()
        for event in events:
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                number = self._number(path.parent, value)
                if number is not None:
                    tag = f"{prefix}/{value.tag}" if prefix else value.tag
                    yield int(event.step), tag, number, float(event.wall_time)

    def _number(self, directory: Path, value: Any) -> float | None:
        """The scalar a summary value holds, or None (an image, a histogram, text)."""
        kind = value.WhichOneof("value")
        if kind == "simple_value":  # what torch's SummaryWriter and tensorboardX write
            return float(str(self._float32(value.simple_value)))
        # TF2 writes tensors; their metadata comes with a tag's first value only, so a
        # tag is remembered once it says it holds scalars.
        known = (directory, value.tag)
        if value.metadata.plugin_data.plugin_name == "scalars":
            self._scalar_tags.add(known)
        if kind != "tensor" or known not in self._scalar_tags:
            return None
        from tensorboard.util import tensor_util

        array = tensor_util.make_ndarray(value.tensor)
        return _as_float(array.reshape(())) if array.size == 1 else None


def _as_float(item: Any) -> float:
    """A scalar as the float a user wrote: a float32 (what ``add_scalar`` stores) by its
    shortest text, so 0.1 reads 0.1 and not 0.10000000149 (both name the same float32)."""
    if item.dtype.itemsize < 8 and item.dtype.kind == "f":
        return float(str(item))
    return float(item)


def _loader(path: Path) -> Any:
    # The plain loader: the compat layer of EventFileLoader (every simple value remade
    # as a tensor) costs twice the reading itself, and scalars need none of it.
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    return LegacyEventFileLoader(str(path))
