"""The logout check behind 'traintop engine status'."""

from __future__ import annotations

from pathlib import Path

from engine.client.linger import kills_user_processes


def test_kill_user_processes_is_read_with_later_files_winning(tmp_path: Path) -> None:
    main = tmp_path / "logind.conf"
    main.write_text("[Login]\n#KillUserProcesses=no\nKillUserProcesses=yes\n")
    override = tmp_path / "10-override.conf"
    override.write_text("[Login]\nKillUserProcesses=no\n")
    assert kills_user_processes([main]) is True
    assert kills_user_processes([main, override]) is False
    assert kills_user_processes([tmp_path / "missing.conf"]) is False
    garbage = tmp_path / "bad.conf"
    garbage.write_text("no section header here\n")
    assert kills_user_processes([main, garbage]) is True
