"""Whose the state directory is, and keeping every file in it private.

The state tree holds what a run executes (``launch.json``: its command line
and environment) and what it logged. A directory in it that another user owns,
or may write, lets that user swap files under us (a run directory, ``runs/``
itself) and read or steer later runs, so such a tree is refused, with the path
and the fix in one line. Everything else is made private: files 0600,
directories 0700 (the daemon and its children also run under umask 077).
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from engine.rundir.paths import StatePaths, is_stray_temporary

FILE_MODE = 0o600
DIR_MODE = 0o700
# The daemon's umask, inherited by the shims and workers it starts.
PRIVATE_UMASK = 0o077


class UnsafeStateDir(Exception):
    """A directory of the state tree that another user owns or may write."""


def unsafe_reason(path: Path, info: os.stat_result) -> str | None:
    """Why ``path`` (lstat'ed as ``info``) cannot be trusted, with the fix; None if it can."""
    uid = os.getuid()
    if info.st_uid != uid:
        return (
            f"{path} is owned by uid {info.st_uid}, not by you (uid {uid}); use a state "
            f"directory of your own (TRAINTOP_HOME), or 'chown -R {uid} {path}' if it is yours"
        )
    if stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_IWOTH:
        return (
            f"{path} is writable by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"'chmod 700 {path}' makes it private"
        )
    return None


def check_dir(path: Path) -> None:
    """Raise UnsafeStateDir if the directory ``path`` exists and is not safely ours."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    reason = unsafe_reason(path, info)
    if reason is None and stat.S_ISLNK(info.st_mode):
        check_dir(path.resolve())  # a link of ours: what it names must be ours too
        return
    if reason is not None:
        raise UnsafeStateDir(f"refusing the traintop state directory: {reason}")


def check_state_dir(paths: StatePaths) -> None:
    """The checks a client makes before it connects or writes: the home and ``runs/``."""
    check_dir(paths.home)
    check_dir(paths.runs)


@dataclass
class Tidied:
    """What ``tidy_tree`` changed."""

    modes_fixed: int = 0
    temporaries_removed: list[str] = field(default_factory=list)


def tidy_tree(paths: StatePaths) -> Tidied:
    """Refuse an unsafe tree, else make it private and clear what dead writers left.

    One pass at the daemon's start over every entry: files become 0600 and
    directories 0700 (a tree written by an older traintop, or under a looser
    umask, is fixed), and a temporary whose writer is gone (a checkpoint cut by
    SIGKILL) is removed. Symbolic links are neither followed nor changed. One
    pass with ``os.scandir`` and plain strings: the daemon answers nothing until
    it is done, and a tree of 500 runs holds thousands of files.
    """
    check_state_dir(paths)
    tidied = Tidied()
    uid = os.getuid()
    pending = [str(paths.home)]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except FileNotFoundError:  # gone meanwhile
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # gone meanwhile (a temporary file)
                continue
            mode = info.st_mode
            if stat.S_ISLNK(mode):
                continue
            is_dir = stat.S_ISDIR(mode)
            if info.st_uid != uid or (is_dir and mode & stat.S_IWOTH):
                reason = unsafe_reason(Path(entry.path), info)
                raise UnsafeStateDir(f"refusing the traintop state directory: {reason}")
            if not is_dir and is_stray_temporary(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    tidied.temporaries_removed.append(entry.path)
                continue
            if stat.S_IMODE(mode) != (DIR_MODE if is_dir else FILE_MODE):
                os.chmod(entry.path, DIR_MODE if is_dir else FILE_MODE)
                tidied.modes_fixed += 1
            if is_dir:
                pending.append(entry.path)
    if stat.S_IMODE(paths.home.stat().st_mode) != DIR_MODE:
        os.chmod(paths.home, DIR_MODE)
        tidied.modes_fixed += 1
    return tidied


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) 0700; UnsafeStateDir if it exists and is not ours."""
    check_dir(path)
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path
