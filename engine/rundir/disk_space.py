"""Is the state directory's disk full? And what to do with a write it refused.

The daemon asks :func:`is_full` (statvfs) before it makes a run and while it
follows runs; workers and shims treat ENOSPC (and EDQUOT, a quota that ran
out, which statvfs does not show) as "wait for room", never as a reason to die.

A disk can refuse writes for other reasons than room: remounted read-only after
an error (EROFS), a file made immutable or a permission taken away (EPERM,
EACCES), a failing device (EIO). Those are not the run's fault either and may
pass: workers hold their points and retry as for a full disk (``write_refused``),
and the daemon shows the run's spool as held back (``refusal``).

``TRAINTOP_FAKE_DISK_FULL`` names a flag file: while that file exists, every
filesystem counts as full here and the writes that go through
:func:`refuse_if_fake_full` fail with ENOSPC. It stands in for a full disk in
tests, where no small filesystem can be made without root. A flag file that
holds an errno's name (``EROFS``) fails them with that error instead, and the
filesystem counts as read-only rather than full.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TypeVar

FAKE_DISK_FULL_ENV = "TRAINTOP_FAKE_DISK_FULL"
# Below this much free space a disk counts as full: a run's spool, launch.json and
# a checkpoint would not fit, and SQLite needs room for its journal.
MIN_FREE_BYTES = 1024 * 1024
# How often a write that waits for room tries again.
RETRY_INTERVAL_S = 1.0

T = TypeVar("T")


# Errors by which a disk refuses a write for a while, through no fault of the writer.
REFUSALS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EPERM, errno.EACCES,
                      errno.EIO})
# What the daemon shows as a run's condition while its spool is held back, by cause.
DISK_FULL = "disk full"
READ_ONLY = "disk read-only"
NOT_WRITABLE = "spool not writable"


def _fake_refusal() -> int | None:
    """The errno the fake disk refuses writes with (ENOSPC: full), None while it is off."""
    flag = os.environ.get(FAKE_DISK_FULL_ENV)
    if flag is None:
        return None
    try:
        with open(flag, encoding="ascii") as f:
            name = f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    code = getattr(errno, name, errno.ENOSPC) if name else errno.ENOSPC
    return code if isinstance(code, int) else errno.ENOSPC


def _fake_full() -> bool:
    return _fake_refusal() == errno.ENOSPC


def free_bytes(path: Path) -> int:
    """Bytes this user may still write on the filesystem that holds ``path``."""
    if _fake_full():
        return 0
    st = os.statvfs(path)
    # Root may also use the blocks reserved for it; anyone else only f_bavail.
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize


def _file_names(*paths: Path) -> Iterator[str]:
    """Every file under ``paths`` (each a directory or a file), by name."""
    for path in paths:
        if path.is_dir():
            for parent, _, files in os.walk(path):
                for name in files:
                    yield os.path.join(parent, name)
        else:
            yield str(path)


def disk_use(*paths: Path) -> int:
    """The bytes the files under ``paths`` (each a directory or a file) take on the disk,
    as ``du`` counts them (a file under two names, once); 0 for nothing there."""
    total = 0
    linked: set[tuple[int, int]] = set()  # a file under two names (a kept checkpoint) once
    for name in _file_names(*paths):
        try:
            stat = os.lstat(name)
        except OSError:
            continue  # gone meanwhile, or never there
        if stat.st_nlink > 1:
            if (stat.st_dev, stat.st_ino) in linked:
                continue
            linked.add((stat.st_dev, stat.st_ino))
        total += stat.st_blocks * 512
    return total


def freed_by(*paths: Path, kept: Collection[Path] = ()) -> int:
    """The bytes the disk gets back once the files under ``paths`` are deleted, but for
    those named in ``kept``: those of ``disk_use`` less every file that also has a name
    elsewhere (a checkpoint linked into a fork's directory) or in ``kept``."""
    total = 0
    names_left: dict[tuple[int, int], int] = {}  # a linked file: its names not seen yet
    skip = {str(path) for path in kept}
    for name in _file_names(*paths):
        if name in skip:
            continue  # (and another name of it, never seen to its last, is not counted)
        try:
            stat = os.lstat(name)
        except OSError:
            continue
        if stat.st_nlink > 1:
            key = (stat.st_dev, stat.st_ino)
            left = names_left.get(key, stat.st_nlink) - 1
            names_left[key] = left
            if left:
                continue  # (counted when its last name is seen, if that is here)
        total += stat.st_blocks * 512
    return total


def is_full(path: Path) -> bool:
    """True when the filesystem of ``path`` has less than MIN_FREE_BYTES free."""
    try:
        return free_bytes(path) < MIN_FREE_BYTES
    except OSError:  # the directory went away: not a question of space
        return False


def _os_error(exc: BaseException, codes: Collection[int]) -> OSError | None:
    """The OSError with one of ``codes`` that ``exc`` is, or was raised while handling.
    ``torch.save`` turns the OSError of its file's write into a RuntimeError
    ('unexpected pos'), the OSError its context."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain is short; a cycle must not hang us
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in codes:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def out_of_space(exc: BaseException) -> bool:
    """Is ``exc`` a write refused for want of space (ENOSPC) or of quota (EDQUOT)?"""
    return _os_error(exc, (errno.ENOSPC, errno.EDQUOT)) is not None


def write_refused(exc: BaseException) -> bool:
    """Is ``exc`` a write the disk refused for a while (full, read-only, an I/O error)?"""
    return _os_error(exc, REFUSALS) is not None


def refused_while(exc: BaseException) -> str:
    """How a held spool's note ends: 'points held while the disk was full'."""
    found = _os_error(exc, REFUSALS)
    if found is None or found.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk was full"
    if found.errno == errno.EROFS:
        return "the disk was read-only"
    return f"the spool could not be written ({found.strerror})"


def refusal(path: Path) -> str | None:
    """Why a write under the directory ``path`` would be refused now (DISK_FULL,
    READ_ONLY, NOT_WRITABLE), or None if it would not (as far as cheap calls tell)."""
    if is_full(path):
        return DISK_FULL
    fake = _fake_refusal()
    if fake == errno.EROFS:
        return READ_ONLY
    if fake is not None:
        return NOT_WRITABLE
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return READ_ONLY
    except OSError:
        return None  # the directory went away: not a question of the disk
    return None if os.access(path, os.W_OK) else NOT_WRITABLE


def refuse_if_fake_full() -> None:
    """Raise the fake disk's error while it is on (see the module docstring)."""
    code = _fake_refusal()
    if code is not None:
        raise OSError(code, os.strerror(code))


def when_room(write: Callable[[], T]) -> T:
    """Call ``write`` until the disk lets it through.

    For writes that must happen and can wait (a checkpoint, exit.json): the
    process stays alive, and the daemon shows the run's disk as refusing meanwhile.
    """
    while True:
        try:
            return write()
        except OSError as exc:
            if not write_refused(exc):
                raise
        time.sleep(RETRY_INTERVAL_S)
