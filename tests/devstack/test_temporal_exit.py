"""The Temporal dev server exiting after it started (its UI's port taken between the check and
its bind, as happens when other stacks start on the same machine) is reported as itself, with
its log's last line, not as the worker that then cannot reach it; and at once, not when the
wait for its ports runs out."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from musehub.devstack import temporal
from musehub.devstack.ports import free_port
from musehub.devstack.temporal import TemporalDevServer


def test_a_server_that_exits_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(temporal, "ensure_port_free", lambda *args, **kwargs: None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = TemporalDevServer(
            tmp_path / "temporal.db", port=free_port(), ui_port=taken.getsockname()[1]
        )
        began = time.monotonic()
        try:
            try:
                server.start(timeout=60)
            except RuntimeError as exc:  # it may exit before its own port ever answers
                failure: str | None = str(exc)
            else:
                deadline = time.monotonic() + 30
                while (failure := server.failure()) is None and time.monotonic() < deadline:
                    time.sleep(0.1)
        finally:
            server.stop()
    assert failure is not None
    assert time.monotonic() - began < 20  # said when it exits, not when the wait times out
    assert "the Temporal dev server exited with code" in failure
    assert "address already in use" in failure and "temporal.log" in failure


def test_a_running_server_has_no_failure(tmp_path: Path) -> None:
    server = TemporalDevServer(tmp_path / "temporal.db", port=free_port(), ui_port=None)
    with server:
        assert server.failure() is None
