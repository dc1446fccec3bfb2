"""Which HTTP implementation the client talks through (``musehub/client/session.py``): its own
``HTTP11Client`` for http:// with no proxy or a plain http:// one, httpx otherwise; and a clone
from an http:// hub that never imports httpx (or ``urllib.request``) at all."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from musehub.client.http11 import HTTP11Client
from musehub.client.session import (
    ReadError,
    environment_proxies,
    http_errors,
    open_session,
    transport_errors,
)

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


async def test_plain_http_goes_through_the_own_client() -> None:
    session = open_session(None, timeout=5.0, headers={})
    assert isinstance(session, HTTP11Client) and session._proxy is None
    await session.aclose()


async def test_a_plain_http_proxy_is_spoken_by_the_own_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.test:3128")
    session = open_session(None, timeout=5.0, headers={})
    assert isinstance(session, HTTP11Client) and session._proxy == ("proxy.test", 3128)
    await session.aclose()


@pytest.mark.parametrize(
    "variable, value",
    [("HTTPS_PROXY", "http://proxy.test:3128"), ("ALL_PROXY", "http://proxy.test:3128")],
)
async def test_other_proxy_settings_go_to_httpx(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    session = open_session(None, timeout=5.0, headers={})
    assert isinstance(session, httpx.AsyncClient)
    await session.aclose()


async def test_a_transport_given_goes_to_httpx() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    session = open_session(transport, timeout=5.0, headers={})
    assert isinstance(session, httpx.AsyncClient)
    await session.aclose()


def test_proxies_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert environment_proxies() == {}
    monkeypatch.setenv("http_proxy", "http://proxy.test:3128")
    monkeypatch.setenv("no_proxy", "localhost")
    assert environment_proxies() == {"http": "http://proxy.test:3128"}


def test_errors_of_either_implementation_are_caught() -> None:
    assert issubclass(ReadError, transport_errors()) and issubclass(ReadError, http_errors())
    # httpx is loaded here (this module imports it): its errors count too.
    assert issubclass(httpx.ReadError, transport_errors())
    assert issubclass(httpx.ConnectError, http_errors())


def test_a_clone_from_an_http_hub_never_imports_httpx(tmp_path: Path) -> None:
    """Nothing listens on the port: the clone fails with its message, having loaded neither
    httpx nor urllib's request module (what an http:// clone used to pay for at start-up)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = (
        "import sys\n"
        "from musehub.cli.main import main\n"
        f"code = main(['clone', '-q', 'http://127.0.0.1:{port}/a/b', {str(tmp_path / 'b')!r}])\n"
        "print(code, *(m for m in ('httpx', 'urllib.request') if m in sys.modules))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.lower().endswith("_proxy")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split() == ["1"]
    assert "cannot reach" in done.stderr and "check the URL" in done.stderr
