"""The hub's app served by a real uvicorn with the options `musehub api` uses
(`api.server.server_options`), on a loopback port from a background thread, with short
slow-client limits so the tests take seconds."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr

from api.app import create_app
from api.server import server_options
from musehub.settings import ApiSettings, load_settings
from musehub.storage import LocalStorage
from musehub.temporal import LazyTemporalClient

SIGNING_KEY = b"server-tests-signing-key"
# Short limits: headers within 1 s; bodies at 256 KiB/s on average once half a second has passed.
TEST_LIMITS: dict[str, Any] = {
    "header_timeout_seconds": 1.0,
    "body_grace_seconds": 0.5,
    "min_body_bytes_per_second": 256 * 1024,
    "keep_alive_seconds": 1,
}


@dataclass
class ServedHub:
    host: str
    port: int
    storage: LocalStorage

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connect(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=10)


@contextmanager
def run_server(config: uvicorn.Config, sock: socket.socket) -> Iterator[None]:
    """Serve on the bound `sock` until the block ends."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve_hub(state_dir: Path, **api_overrides: Any) -> Iterator[ServedHub]:
    """The hub's own app (local storage, no Temporal; no test here needs the database)."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    api = ApiSettings(
        port=port, public_base_url=f"http://127.0.0.1:{port}", **{**TEST_LIMITS, **api_overrides}
    )
    settings = load_settings(
        state_dir=state_dir, signing_key=SecretStr(SIGNING_KEY.decode()), api=api
    )
    storage = LocalStorage(
        settings.blobs_root, signing_key=SIGNING_KEY, public_base_url=settings.public_base_url
    )
    app = create_app(
        settings, object_storage=storage, temporal=LazyTemporalClient.disabled(settings)
    )
    config = uvicorn.Config(app, log_level="warning", **server_options(api))
    with run_server(config, sock):
        yield ServedHub("127.0.0.1", port, storage)


@pytest.fixture(scope="module")
def served_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedHub]:
    with serve_hub(tmp_path_factory.mktemp("served-hub")) as hub:
        yield hub
