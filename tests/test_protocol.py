"""The wire protocol against a real daemon: raw unix-socket clients that misbehave.

Every bad input gets an error frame (or a closed connection where the stream
cannot be trusted any more), and none of it stops the daemon.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.common import protocol
from tests.conftest import Engine

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
# Error codes the daemon may answer with; "internal" means a handler crashed.
USER_ERRORS = {
    "bad_handshake",
    "bad_frame",
    "bad_request",
    "unknown_method",
    "not_found",
    "ambiguous",
    "invalid_state",
    "bad_config",
    "missing_dir",
}
# Methods a fuzzer may call: not shutdown, which would (rightly) stop the daemon.
METHODS = [
    "ping",
    "status",
    "list_runs",
    "get_run",
    "start",
    "pause",
    "resume",
    "fork",
    "kill",
    "metrics",
    "read_log",
    "subscribe",
]
PARAM_NAMES = [
    "run",
    "key",
    "after_step",
    "stream",
    "offset",
    "workload",
    "overrides",
    "name",
    "steps",
    "device",
    "cwd",
    "release",
    "grace",
    "topics",
    "runs",
]


# -- a raw client ----------------------------------------------------------------


def connect(engine: Engine) -> socket.socket:
    """A bare connection to the daemon (started first), no handshake."""
    engine.call("ping")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10.0)
    sock.connect(str(engine.paths.socket))
    return sock


def send_body(sock: socket.socket, body: bytes) -> None:
    sock.sendall(struct.pack(">I", len(body)) + body)


def send(sock: socket.socket, message: Any) -> None:
    send_body(sock, json.dumps(message).encode())


def recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes, or None if the daemon closed the connection first."""
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def recv(sock: socket.socket) -> dict[str, Any] | None:
    """The next frame from the daemon; None once it closed the connection."""
    header = recv_exactly(sock, protocol.HEADER_SIZE)
    if header is None:
        return None
    body = recv_exactly(sock, protocol.frame_length(header))
    assert body is not None, "the daemon closed the connection inside a frame"
    return protocol.decode(body)


def reply(sock: socket.socket) -> dict[str, Any]:
    """The next answer to a request. Event frames are passed over: a request the fuzzers
    make up may subscribe the connection, and then telemetry can come before an answer."""
    while True:
        message = recv(sock)
        assert message is not None, "the daemon closed the connection instead of answering"
        if "event" not in message:
            return message


def assert_closed(sock: socket.socket) -> None:
    assert recv_exactly(sock, 1) is None


def shake_hands(engine: Engine) -> socket.socket:
    sock = connect(engine)
    send(sock, protocol.hello())
    hello = reply(sock)
    assert hello["hello"] == protocol.HELLO
    assert hello["version"] == protocol.PROTOCOL_VERSION
    assert hello["pid"] == engine.daemon_pid()
    return sock


def error_code(message: dict[str, Any]) -> str:
    assert "error" in message, message
    assert "result" not in message
    assert isinstance(message["error"]["message"], str) and message["error"]["message"]
    code: str = message["error"]["code"]
    return code


def assert_ping_works(sock: socket.socket, request_id: int = 99) -> None:
    send(sock, {"id": request_id, "method": "ping", "params": {}})
    assert reply(sock) == {
        "id": request_id,
        "result": {"pong": True, "time": pytest.approx(time.time(), abs=60)},
    }


def assert_daemon_alive(engine: Engine, pid: int | None) -> None:
    assert engine.call("ping")["pong"] is True
    assert engine.daemon_pid() == pid


def assert_no_tracebacks(engine: Engine) -> None:
    """Nothing a client sent made a handler crash (the daemon logs those with a traceback)."""
    log = engine.paths.daemon_log.read_text()
    assert "Traceback" not in log, log


# -- handshake -------------------------------------------------------------------


BAD_HELLOS: list[dict[str, Any]] = [
    {"hello": "traintop", "version": 999},
    {"hello": "traintop", "version": "1"},
    {"hello": "traintop"},
    {"hello": "other", "version": protocol.PROTOCOL_VERSION},
    {},
]


def test_bad_handshake_gets_an_error_then_close(engine: Engine) -> None:
    for hello in BAD_HELLOS:
        with connect(engine) as sock:
            send(sock, hello)
            message = reply(sock)
            assert error_code(message) == "bad_handshake", hello
            assert message["id"] is None
            assert_closed(sock)
    assert_no_tracebacks(engine)


def test_wrong_version_message_names_both_versions(engine: Engine) -> None:
    with connect(engine) as sock:
        send(sock, {"hello": "traintop", "version": 999})
        text = reply(sock)["error"]["message"]
        assert "999" in text and str(protocol.PROTOCOL_VERSION) in text


def test_request_before_handshake_is_refused(engine: Engine) -> None:
    with connect(engine) as sock:
        send(sock, {"id": 1, "method": "ping", "params": {}})
        assert error_code(reply(sock)) == "bad_handshake"
        assert_closed(sock)


def test_garbage_before_handshake_is_skipped(engine: Engine) -> None:
    """A body that is not an object is answered and skipped; the handshake can follow."""
    with connect(engine) as sock:
        send_body(sock, b"\x00garbage")
        assert error_code(reply(sock)) == "bad_frame"
        send(sock, protocol.hello())
        assert reply(sock)["hello"] == protocol.HELLO
        assert_ping_works(sock)


def test_handshake_then_requests(engine: Engine) -> None:
    with shake_hands(engine) as sock:
        assert_ping_works(sock, 1)
        send(sock, {"id": "abc", "method": "list_runs"})  # params may be left out
        assert reply(sock) == {"id": "abc", "result": {"runs": [], "next": None}}


def test_pipelined_requests_are_answered_in_order(engine: Engine) -> None:
    with shake_hands(engine) as sock:
        frames = b"".join(
            protocol.encode({"id": i, "method": "status", "params": {}}) for i in range(20)
        )
        sock.sendall(frames)
        assert [reply(sock)["id"] for _ in range(20)] == list(range(20))


# -- framing ---------------------------------------------------------------------


@pytest.mark.parametrize("after_handshake", [False, True])
def test_oversized_frame_is_refused_and_closes(engine: Engine, after_handshake: bool) -> None:
    pid = engine.daemon_pid() or engine.call("status")["pid"]
    with shake_hands(engine) if after_handshake else connect(engine) as sock:
        sock.sendall(struct.pack(">I", protocol.MAX_FRAME + 1))
        message = reply(sock)
        assert error_code(message) == "bad_frame"
        assert str(protocol.MAX_FRAME) in message["error"]["message"]
        assert_closed(sock)
    assert_daemon_alive(engine, pid)


def test_frame_of_exactly_the_cap_is_read(engine: Engine) -> None:
    """A body of MAX_FRAME bytes is still a frame: read whole, then answered."""
    with shake_hands(engine) as sock:
        body = b'{"id":5,"method":"ping","pad":"' + b"x" * protocol.MAX_FRAME
        body = body[: protocol.MAX_FRAME - 2] + b'"}'
        assert len(body) == protocol.MAX_FRAME
        send_body(sock, body)
        assert reply(sock)["result"]["pong"] is True


BAD_BODIES = {
    "not json": b"this is not json",
    "empty": b"",
    "array": b"[1, 2, 3]",
    "string": b'"ping"',
    "number": b"42",
    "null": b"null",
    "invalid utf-8": b'{"id": 1, "method": "\xff\xfe"}',
    "truncated object": b'{"id": 1, "method": "ping"',
    "huge integer": b'{"id": ' + b"9" * 5000 + b"}",
    "deep nesting": b"[" * 200_000 + b"]" * 200_000,
}


def test_bad_bodies_get_an_error_and_the_connection_goes_on(engine: Engine) -> None:
    with shake_hands(engine) as sock:
        for case, body in BAD_BODIES.items():
            send_body(sock, body)
            message = reply(sock)
            assert error_code(message) == "bad_frame", case
            assert message["id"] is None
            assert_ping_works(sock)
    assert_no_tracebacks(engine)


def test_split_writes_make_one_frame(engine: Engine) -> None:
    """A frame that arrives a byte at a time is the same frame."""
    with shake_hands(engine) as sock:
        for byte in protocol.encode({"id": 3, "method": "ping", "params": {}}):
            sock.sendall(bytes([byte]))
        assert reply(sock)["id"] == 3


def test_disconnect_inside_a_frame_is_harmless(engine: Engine) -> None:
    pid = engine.call("status")["pid"]
    with shake_hands(engine) as sock:
        sock.sendall(struct.pack(">I", 100) + b'{"id": 1')
    with connect(engine) as sock:
        sock.sendall(b"\x00\x00")
    assert_daemon_alive(engine, pid)


# -- requests --------------------------------------------------------------------


def test_unknown_method(engine: Engine) -> None:
    with shake_hands(engine) as sock:
        send(sock, {"id": 7, "method": "no_such_method", "params": {}})
        message = reply(sock)
        assert message["id"] == 7
        assert error_code(message) == "unknown_method"
        assert "no_such_method" in message["error"]["message"]
        assert_ping_works(sock)


def test_request_needs_an_int_or_string_id(engine: Engine) -> None:
    with shake_hands(engine) as sock:
        for request_id in [None, True, False, 1.5, [1], {"a": 1}]:
            send(sock, {"id": request_id, "method": "ping", "params": {}})
            message = reply(sock)
            assert message["id"] is None
            assert error_code(message) == "bad_request", request_id
        send(sock, {"method": "ping", "params": {}})  # no id at all
        message = reply(sock)
        assert message["id"] is None
        assert error_code(message) == "bad_request"
        assert_ping_works(sock)


BAD_REQUESTS: dict[str, dict[str, Any]] = {
    "method not a string": {"method": 5, "params": {}},
    "method missing": {"params": {}},
    "params a list": {"method": "ping", "params": []},
    "params a string": {"method": "ping", "params": "x"},
    "params null": {"method": "ping", "params": None},
    "run not a string": {"method": "get_run", "params": {"run": 5}},
    "run empty": {"method": "get_run", "params": {"run": ""}},
    "run missing": {"method": "kill", "params": {}},
    "workload missing": {"method": "start", "params": {}},
    "workload not a string": {"method": "start", "params": {"workload": 5}},
    "overrides a string": {
        "method": "start",
        "params": {"workload": "synthetic", "overrides": "lr=1"},
    },
    "overrides of numbers": {
        "method": "start",
        "params": {"workload": "synthetic", "overrides": [1]},
    },
    "name not a string": {"method": "start", "params": {"workload": "synthetic", "name": 3}},
    "steps not an int": {"method": "start", "params": {"workload": "synthetic", "steps": "9"}},
    "device not a string": {"method": "start", "params": {"workload": "synthetic", "device": 0}},
    "cwd not a string": {"method": "start", "params": {"workload": "synthetic", "cwd": []}},
    "workload null": {"method": "start", "params": {"workload": None}},
    "workload with NUL": {"method": "start", "params": {"workload": "/tmp/a\0.py"}},
    "cwd with NUL": {"method": "start", "params": {"workload": "x.py", "cwd": "/tmp\0"}},
    "name with NUL": {"method": "start", "params": {"workload": "synthetic", "name": "a\0"}},
    "override with NUL": {
        "method": "start",
        "params": {"workload": "synthetic", "overrides": ["lr=1\0"]},
    },
    "steps true": {"method": "start", "params": {"workload": "synthetic", "steps": True}},
    "steps past int64": {"method": "start", "params": {"workload": "synthetic", "steps": 2**63}},
    "topics a string": {"method": "subscribe", "params": {"topics": "runs"}},
    "topics empty": {"method": "subscribe", "params": {"topics": []}},
    "topics unknown": {"method": "subscribe", "params": {"topics": ["weather"]}},
    "topics not names": {"method": "subscribe", "params": {"topics": [{"runs": 1}, ["logs"]]}},
    "runs of numbers": {"method": "subscribe", "params": {"runs": [1]}},
}


def test_bad_params_are_bad_requests(engine: Engine) -> None:
    with shake_hands(engine) as sock:
        for case, bad in BAD_REQUESTS.items():
            send(sock, {"id": 11, **bad})
            message = reply(sock)
            assert message["id"] == 11
            assert error_code(message) == "bad_request", (case, message)
        assert_ping_works(sock)
    assert engine.all_runs() == []
    assert_no_tracebacks(engine)


def test_run_requests_for_unknown_runs_are_not_found(engine: Engine) -> None:
    with shake_hands(engine) as sock:
        for i, method in enumerate(["get_run", "pause", "resume", "fork", "kill", "metrics"]):
            send(sock, {"id": i, "method": method, "params": {"run": "zzzzzz"}})
            message = reply(sock)
            assert message["id"] == i
            assert error_code(message) == "not_found"


def test_numbers_out_of_range_are_bad_requests(engine: Engine) -> None:
    """Huge integers, NaN and infinity (which JSON parsers accept) are refused, not crashes."""
    run = engine.call("start", workload="synthetic", overrides=["steps=3"])
    engine.wait_state(run["id"], "finished")
    ref = json.dumps(run["id"])
    bodies = [
        f'{{"id": 1, "method": "metrics", "params": {{"run": {ref}, "after_step": {2**64}}}}}',
        f'{{"id": 1, "method": "read_log", "params": {{"run": {ref}, "offset": {-(2**70)}}}}}',
        f'{{"id": 1, "method": "metrics", "params": {{"run": {ref}, "after_step": true}}}}',
    ]
    with shake_hands(engine) as sock:
        for body in bodies:
            send_body(sock, body.encode())
            assert error_code(reply(sock)) == "bad_request", body
        send(sock, {"id": 2, "method": "metrics", "params": {"run": run["id"], "after_step": 1}})
        later = [point[0] for point in reply(sock)["result"]["points"]]
    steps = [point[0] for point in engine.call("metrics", run=run["id"])["points"]]
    assert later == [step for step in steps if step > 1] != []


def test_kill_grace_must_be_a_finite_number(engine: Engine) -> None:
    run = engine.call("start", workload="synthetic", overrides=["steps=100000", "sleep=0.01"])
    with shake_hands(engine) as sock:
        ref = json.dumps(run["id"])
        for grace in ["NaN", "Infinity", "-1", "true", f"{10**400}", '"5"']:
            body = f'{{"id": 1, "method": "kill", "params": {{"run": {ref}, "grace": {grace}}}}}'
            send_body(sock, body.encode())
            assert error_code(reply(sock)) == "bad_request", grace
    assert engine.run(run["id"])["state"] in ("starting", "running")
    assert not any("kill" in e["reason"] for e in engine.run(run["id"])["events"])


def test_subscribe_over_the_socket(engine: Engine) -> None:
    """Subscribe is handled by the daemon itself, per connection."""
    with shake_hands(engine) as sock:
        send(sock, {"id": 1, "method": "subscribe", "params": {"topics": ["runs"]}})
        assert reply(sock) == {"id": 1, "result": {"topics": ["runs"], "runs": None}}


# -- fuzzing ---------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["", "x.py", "runs", "metrics", "logs", "stdout", "stderr", "cpu"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "id": st.integers() | st.text(max_size=10) | json_values,
        "method": st.sampled_from(METHODS) | st.text(max_size=12) | json_values,
        "params": st.dictionaries(st.sampled_from(PARAM_NAMES), json_values) | json_values,
    },
)


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_raw_bytes_never_kill_the_daemon(engine: Engine, data: bytes) -> None:
    pid = engine.call("status")["pid"]
    with connect(engine) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)  # the daemon may have hung up already
            sock.shutdown(socket.SHUT_WR)
        # Whatever comes back is well-formed frames, then the daemon hangs up.
        while (message := recv(sock)) is not None:
            assert "error" in message or "hello" in message
    assert_daemon_alive(engine, pid)
    assert_no_tracebacks(engine)


@FUZZ
@given(bodies=st.lists(st.binary(max_size=200), min_size=1, max_size=5))
def test_fuzz_random_frames_are_each_answered(engine: Engine, bodies: list[bytes]) -> None:
    pid = engine.call("status")["pid"]
    with shake_hands(engine) as sock:
        for body in bodies:
            send_body(sock, body)
            message = reply(sock)
            if "error" in message:
                assert error_code(message) in USER_ERRORS, message
        assert_ping_works(sock)
    assert_daemon_alive(engine, pid)
    assert_no_tracebacks(engine)


@FUZZ
@given(messages=st.lists(requests, min_size=1, max_size=4))
def test_fuzz_requests_get_one_reply_each(engine: Engine, messages: list[dict[str, Any]]) -> None:
    pid = engine.call("status")["pid"]
    with shake_hands(engine) as sock:
        for message in messages:
            send_body(sock, json.dumps(message).encode())
            answer = reply(sock)
            request_id = message.get("id")
            valid_id = isinstance(request_id, int | str) and not isinstance(request_id, bool)
            assert answer["id"] == (request_id if valid_id else None), (message, answer)
            if "error" in answer:
                assert error_code(answer) in USER_ERRORS, (message, answer)
            else:
                assert set(answer) == {"id", "result"}
        assert_ping_works(sock)
    assert_daemon_alive(engine, pid)
    assert_no_tracebacks(engine)
    assert engine.all_runs() == []


# -- a subscriber that never reads -----------------------------------------------


def test_a_subscriber_that_never_reads_does_not_block_others(engine: Engine) -> None:
    """A flood of events to a stalled subscriber leaves every other client served."""
    pid = engine.call("status")["pid"]
    with shake_hands(engine) as stalled:
        send(stalled, {"id": 1, "method": "subscribe", "params": {}})
        assert reply(stalled)["result"]["runs"] is None
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        run = engine.call(
            "start",
            workload="synthetic",
            overrides=["steps=100000", "extra_metrics=100", "print_every=1"],
        )
        with engine.client() as other:
            other.sock.settimeout(10.0)  # type: ignore[union-attr]
            deadline = time.monotonic() + 60.0
            pings = 0
            while other.call("get_run", run=run["id"])["step"] < 100:
                assert time.monotonic() < deadline, "the run never got going"
                assert other.call("ping")["pong"] is True
                pings += 1
                time.sleep(0.02)
        assert pings > 0
        engine.call("kill", run=run["id"], grace=0)
        engine.wait_state(run["id"], "killed")
    assert_daemon_alive(engine, pid)
