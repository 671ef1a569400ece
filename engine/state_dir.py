"""Whose the state directory is, and keeping every file in it private.

The state tree holds what a run executes (``launch.json``: its command line
and environment) and what it logged. A directory in it that another user owns,
or may write, lets that user swap files under us (a run directory, ``runs/``
itself) and read or steer later runs, so such a tree is refused, with the path
and the fix in one line. Everything else is made private: files 0600,
directories 0700 (the daemon and its children also run under umask 077).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from engine.paths import StatePaths

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


def secure_tree(paths: StatePaths) -> int:
    """Refuse an unsafe tree, else make every file 0600 and every directory 0700.

    Run by the daemon at start, so a tree written by an older traintop (or
    with a looser umask) is fixed. Symbolic links are neither followed nor
    changed. Returns how many modes were changed.
    """
    check_state_dir(paths)
    fixed = 0
    for root, dirs, files in os.walk(paths.home):
        for name in [*dirs, *files]:
            path = Path(root, name)
            try:
                info = path.lstat()
            except FileNotFoundError:  # gone meanwhile (a temporary file)
                continue
            if stat.S_ISLNK(info.st_mode):
                continue
            reason = unsafe_reason(path, info)
            if reason is not None:
                raise UnsafeStateDir(f"refusing the traintop state directory: {reason}")
            wanted = DIR_MODE if stat.S_ISDIR(info.st_mode) else FILE_MODE
            if stat.S_IMODE(info.st_mode) != wanted:
                os.chmod(path, wanted)
                fixed += 1
    if stat.S_IMODE(paths.home.stat().st_mode) != DIR_MODE:
        os.chmod(paths.home, DIR_MODE)
        fixed += 1
    return fixed


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) 0700; UnsafeStateDir if it exists and is not ours."""
    check_dir(path)
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path
