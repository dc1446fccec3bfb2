"""moto's S3 server, as the tests and benchmarks run it: in a thread, or as a child process
(`python -m musehub.devstack.moto_s3 --port N`). moto comes with the `test` extra.

One fix on the way in. urllib, and so the muse client, PUTs to a presigned URL with its default
`Content-Type: application/x-www-form-urlencoded`. S3 and R2 store the bytes whatever the type;
moto's server parses such a body as a form and stores nothing, answering 200 (getmoto/moto#3363),
or hangs on bytes that are not form text. The type is not signed in a presigned URL, so saying
`application/octet-stream` instead changes nothing S3 would check."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

FORM_TYPE = "application/x-www-form-urlencoded"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class StoresFormTypedPuts:
    """WSGI middleware: a PUT typed as a form is passed on as raw bytes."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "PUT" and environ.get("CONTENT_TYPE", "").startswith(
            FORM_TYPE
        ):
            environ["CONTENT_TYPE"] = "application/octet-stream"
        return self.app(environ, start_response)


@contextmanager
def running_moto_s3(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """moto's S3 server in a thread of this process; yields its endpoint URL."""
    server = _make_server(host, port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        bound_host, bound_port = server.server_address[:2]
        yield f"http://{bound_host!s}:{bound_port}"
    finally:
        server.shutdown()
        thread.join()


def _make_server(host: str, port: int) -> Any:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = StoresFormTypedPuts(DomainDispatcherApplication(create_backend_app))
    return make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto's S3 server, storing form-typed PUTs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    _make_server(args.host, args.port).serve_forever()


if __name__ == "__main__":
    main()
