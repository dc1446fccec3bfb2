"""Where a request goes (`http11_request.route`): direct, or through the proxy in absolute form
unless `NO_PROXY` names the host; and knowing that costs no import of urllib's request module
when no such variable is set."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from musehub.client.http11_request import route

PROXY = ("127.0.0.1", 3128)


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_direct_without_a_proxy_and_through_it_with_one() -> None:
    assert route("http://hub.example:8000/a/b/fetch?x=1", None) == (
        ("hub.example", 8000),
        "/a/b/fetch?x=1",
        "hub.example:8000",
    )
    assert route("http://hub.example/a b", PROXY) == (
        PROXY,
        "http://hub.example/a%20b",
        "hub.example",
    )


def test_a_host_no_proxy_names_goes_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "hub.example")
    assert route("http://hub.example/a", PROXY)[0] == ("hub.example", 80)
    assert route("http://other.example/a", PROXY)[0] == PROXY


def test_without_no_proxy_the_answer_costs_no_urllib_request_import() -> None:
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    probe = (
        "import sys\n"
        "from musehub.client.http11_request import route\n"
        "assert route('http://hub.example/a', ('127.0.0.1', 3128))[0] == ('127.0.0.1', 3128)\n"
        "print('urllib.request' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.split() == ["False"]
