"""Only the owner can reach the engine: private files, no network, peer uid checked."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import socket
import stat
from pathlib import Path
from typing import Any

import psutil
import pytest

from engine.common import protocol
from tests.conftest import Engine


def connect_as(uid: int, gid: int, home: Path) -> dict[str, Any]:
    """Connect to ``home``'s socket from a forked child running as ``uid``.

    The child changes into the state directory before dropping root, so closed
    parent directories do not matter. It sends a handshake and reports every
    frame that came back (or the connect error) through a pipe.
    """
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child never returns to pytest
        code = 0
        try:
            os.close(read_end)
            os.chdir(home)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os.write(write_end, json.dumps(_handshake_from_here()).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child as another user failed"
    result: dict[str, Any] = json.loads(output)
    return result


def _handshake_from_here() -> dict[str, Any]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.connect("engine.sock")
    except OSError as exc:
        return {"uid": os.getuid(), "connect_error": str(exc)}
    with contextlib.suppress(OSError):  # the daemon may hang up before reading
        sock.sendall(protocol.encode(protocol.hello()))
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
    sock.close()
    frames = []
    while len(data) >= protocol.HEADER_SIZE:
        end = protocol.HEADER_SIZE + protocol.frame_length(data[: protocol.HEADER_SIZE])
        frames.append(protocol.decode(data[protocol.HEADER_SIZE : end]))
        data = data[end:]
    return {"uid": os.getuid(), "frames": frames}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_socket_and_state_dir_are_private(engine: Engine) -> None:
    engine.call("ping")
    assert stat.S_ISSOCK(engine.paths.socket.stat().st_mode)
    assert mode(engine.paths.socket) == 0o600
    assert mode(engine.paths.home) == 0o700
    assert mode(engine.paths.runs) == 0o700
    assert engine.paths.socket.stat().st_uid == os.getuid()


def test_state_dir_made_private_even_if_it_existed_open(engine: Engine) -> None:
    engine.paths.home.mkdir(parents=True)
    os.chmod(engine.paths.home, 0o755)
    engine.call("ping")
    assert mode(engine.paths.home) == 0o700
    assert mode(engine.paths.socket) == 0o600


def test_no_network_listener(engine: Engine) -> None:
    pid = engine.call("status")["pid"]
    assert pid == engine.daemon_pid()
    daemon = psutil.Process(pid)
    assert daemon.net_connections(kind="inet") == []
    unix = [c for c in daemon.net_connections(kind="unix") if c.laddr]
    # The listening socket, and a connection it accepted that is still closing (the
    # status call's) bound to the same path: one path only.
    assert {str(c.laddr) for c in unix} == {str(engine.paths.socket)}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_other_uid_is_refused_by_peer_credentials(engine: Engine) -> None:
    nobody = pwd.getpwnam("nobody")
    pid = engine.call("status")["pid"]
    home, sock = engine.paths.home, engine.paths.socket
    # Open the door the file modes normally keep shut, so only SO_PEERCRED is left.
    os.chmod(home, 0o711)
    os.chmod(sock, 0o666)
    try:
        result = connect_as(nobody.pw_uid, nobody.pw_gid, home)
    finally:
        os.chmod(sock, 0o600)
        os.chmod(home, 0o700)
    assert result["uid"] == nobody.pw_uid
    assert "connect_error" not in result, "the peer never reached the daemon: test is void"
    frames = result["frames"]
    assert all("hello" not in frame for frame in frames), frames
    assert [frame["error"]["code"] for frame in frames] in ([], ["permission_denied"])
    if frames:
        assert str(nobody.pw_uid) in frames[0]["error"]["message"]
    assert f"refused a connection from uid {nobody.pw_uid}" in engine.paths.daemon_log.read_text()
    # The owner is still served, by the same daemon.
    assert engine.call("status")["pid"] == pid == engine.daemon_pid()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_other_uid_cannot_reach_the_socket_through_the_file_modes(engine: Engine) -> None:
    """With the modes as the daemon sets them, another user fails at connect()."""
    nobody = pwd.getpwnam("nobody")
    engine.call("ping")
    os.chmod(engine.paths.home, 0o711)  # only the socket's own 0600 stands in the way
    try:
        result = connect_as(nobody.pw_uid, nobody.pw_gid, engine.paths.home)
    finally:
        os.chmod(engine.paths.home, 0o700)
    assert "Permission denied" in result["connect_error"]
    assert engine.call("ping")["pong"] is True
