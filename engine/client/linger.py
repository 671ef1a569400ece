"""Will systemd-logind kill this user's processes (the daemon and its runs) at logout?

Where logind runs with ``KillUserProcesses=yes`` and the user has no lingering,
closing the last SSH session kills everything the user started, detached or
not. ``traintop engine status`` warns about it and says how to fix it.
"""

from __future__ import annotations

import configparser
import getpass
import shutil
import subprocess
from pathlib import Path

LOGIND_CONF = [
    Path("/etc/systemd/logind.conf"),
    *sorted(Path("/etc/systemd/logind.conf.d").glob("*.conf")),
]


def kills_user_processes(confs: list[Path] | None = None) -> bool:
    """Whether logind's configuration says KillUserProcesses=yes (later files win)."""
    value = "no"
    for conf in LOGIND_CONF if confs is None else confs:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        try:
            parser.read_string(conf.read_text(encoding="utf-8", errors="replace"))
        except (OSError, configparser.Error):
            continue
        if parser.has_option("Login", "KillUserProcesses"):
            value = parser.get("Login", "KillUserProcesses").strip().lower()
    return value in ("yes", "true", "1", "on")


def lingering(user: str) -> bool | None:
    """Whether ``user`` has lingering enabled; None where logind cannot be asked."""
    if Path(f"/var/lib/systemd/linger/{user}").exists():
        return True
    if shutil.which("loginctl") is None:
        return None
    try:
        out = subprocess.run(
            ["loginctl", "show-user", user, "-p", "Linger", "--value"],
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    answer = out.stdout.strip()
    return None if out.returncode != 0 or not answer else answer == "yes"


def logout_warning() -> str | None:
    """One line of advice when logging out would kill the runs, else None."""
    if not kills_user_processes():
        return None
    user = getpass.getuser()
    if lingering(user):
        return None
    return (
        "logind kills your processes at logout (KillUserProcesses=yes) and lingering is off: "
        f"runs would die with your last session; fix with 'loginctl enable-linger {user}'"
    )
