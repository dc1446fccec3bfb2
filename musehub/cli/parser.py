"""Every `musehub` subcommand and its options. Handlers are named, not imported: a command
loads only its own modules, so `musehub clone` starts without the server's stack."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from musehub.domains import DOMAINS

# typing's own TYPE_CHECKING would import typing (3 ms of every `--help`); checkers know this
# name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, told the terminal's width: its own way imports ``shutil`` (and with
    it zlib, bz2 and lzma) for ``get_terminal_size``, a few ms of every ``--help``."""

    def __init__(self, prog: str, **options: Any) -> None:
        options.setdefault("width", _columns() - 2)  # what argparse subtracts
        super().__init__(prog, **options)


def _columns() -> int:
    """``shutil.get_terminal_size().columns``: $COLUMNS, else the terminal's, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return columns or 80


class _Parser(argparse.ArgumentParser):
    """Every parser and subparser (``add_parser`` builds ``type(self)``) uses ``_HelpFormatter``."""

    def __init__(self, *args: Any, **options: Any) -> None:
        options.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **options)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="musehub", description="MuseHub: a muse hosting service with prebuilt clone packs."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_dev, _servers, _repos, _rebuild, _gc, _schedules, _client):
        add(commands)
    return parser


def _dev(commands: Any) -> None:
    dev = commands.add_parser(
        "dev", help="run the whole stack on embedded defaults, in the foreground (Ctrl-C stops)"
    )
    dev.add_argument("--port", type=int, help="API port (default 8000, MUSEHUB_API_PORT)")
    dev.add_argument(
        "--state-dir",
        type=Path,
        help="where Postgres data, Temporal state and local blobs live "
        "(default ./.musehub, MUSEHUB_STATE_DIR)",
    )
    dev.set_defaults(handler="musehub.cli.dev:run_dev")
    migrate = commands.add_parser(
        "migrate", help="migrate MUSEHUB_DATABASE_URL to the newest schema"
    )
    migrate.set_defaults(handler="musehub.cli.dev:run_migrate")


def _servers(commands: Any) -> None:
    api = commands.add_parser(
        "api", help="run the API server (uvicorn; stops gracefully on SIGTERM or Ctrl-C)"
    )
    api.add_argument("--host", help="address to listen on (default 127.0.0.1, MUSEHUB_API_HOST)")
    api.add_argument("--port", type=int, help="port to listen on (default 8000, MUSEHUB_API_PORT)")
    api.add_argument(
        "--workers",
        type=int,
        help="API processes sharing the port (default 2, MUSEHUB_API_WORKERS)",
    )
    api.add_argument(
        "--proxy-headers",
        action=argparse.BooleanOptionalAction,
        help="take the client's address and scheme from X-Forwarded-* "
        "(default on, MUSEHUB_API_PROXY_HEADERS)",
    )
    api.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        help="comma-separated proxies whose X-Forwarded-* are believed, '*' for any "
        "(default 127.0.0.1,::1, MUSEHUB_API_FORWARDED_ALLOW_IPS)",
    )
    api.add_argument(
        "--shutdown-timeout",
        type=int,
        metavar="SECONDS",
        help="on SIGTERM, how long requests in flight may finish "
        "(default 20, MUSEHUB_API_GRACEFUL_SHUTDOWN_SECONDS)",
    )
    api.set_defaults(handler="musehub.cli.api:run_api")

    worker = commands.add_parser(
        "worker",
        help="run a Temporal worker: prebuilds and garbage collection "
        "(stops gracefully on SIGTERM or Ctrl-C)",
    )
    worker.add_argument(
        "--task-queue", help="the general queue (default musehub, MUSEHUB_TEMPORAL_TASK_QUEUE)"
    )
    worker.add_argument(
        "--prebuild-task-queue",
        help="the prebuild queue (default musehub-prebuild, MUSEHUB_TEMPORAL_PREBUILD_TASK_QUEUE)",
    )
    worker.add_argument(
        "--max-concurrent-activities",
        type=int,
        metavar="N",
        help="activities run at once on each shared queue "
        "(default 100, MUSEHUB_TEMPORAL_WORKER_MAX_CONCURRENT_ACTIVITIES)",
    )
    worker.add_argument(
        "--max-concurrent-builds",
        type=int,
        metavar="N",
        help="pack build steps run at once, each with its blobs on local disk "
        "(default 4, MUSEHUB_TEMPORAL_WORKER_MAX_CONCURRENT_BUILDS)",
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus /metrics on this port (default off, "
        "MUSEHUB_TEMPORAL_WORKER_METRICS_PORT)",
    )
    worker.add_argument(
        "--metrics-host",
        help="address of the metrics port (default 127.0.0.1, "
        "MUSEHUB_TEMPORAL_WORKER_METRICS_HOST)",
    )
    worker.set_defaults(handler="musehub.cli.worker:run_worker")


def _repos(commands: Any) -> None:
    repo = commands.add_parser("repo", help="manage repositories").add_subparsers(
        dest="repo_command", required=True, metavar="ACTION"
    )
    create = repo.add_parser("create", help="create a repository: musehub repo create OWNER/SLUG")
    create.add_argument("name", metavar="OWNER/SLUG")
    create.add_argument(
        "--private", action="store_true", help="readable only with the owner's token"
    )
    create.add_argument("--domain", choices=DOMAINS, default="code")
    create.set_defaults(handler="musehub.cli.repos:run_repo_create")

    token = commands.add_parser("token", help="manage access tokens").add_subparsers(
        dest="token_command", required=True, metavar="ACTION"
    )
    make = token.add_parser("create", help="create a token for USER (shown once)")
    make.add_argument("user")
    make.set_defaults(handler="musehub.cli.repos:run_token_create")
    revoke = token.add_parser("revoke", help="revoke a token (give the token or its id)")
    revoke.add_argument("token", metavar="TOKEN_OR_ID")
    revoke.set_defaults(handler="musehub.cli.repos:run_token_revoke")


def _rebuild(commands: Any) -> None:
    rebuild = commands.add_parser("rebuild", help="rebuild a repository's prebuilt clone packs")
    rebuild.add_argument("name", metavar="OWNER/SLUG")
    rebuild.add_argument(
        "--force", action="store_true", help="rebuild packs that are still fresh too"
    )
    rebuild.set_defaults(handler="musehub.cli.rebuild:run_rebuild")


def _gc(commands: Any) -> None:
    parser = commands.add_parser("gc", help="garbage-collect expired prebuilt packs now")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be deleted and reconciled; change nothing",
    )
    parser.set_defaults(handler="musehub.cli.gc:run_gc")


def _schedules(commands: Any) -> None:
    schedules = commands.add_parser("schedules", help="manage the hub's Temporal Schedules")
    actions = schedules.add_subparsers(dest="schedules_command", required=True, metavar="ACTION")
    apply = actions.add_parser("apply", help="create or update the GC schedule from the settings")
    apply.set_defaults(handler="musehub.cli.schedules:run_apply")


def _client(commands: Any) -> None:
    clone = commands.add_parser("clone", help="clone a repository: musehub clone URL [DIR]")
    clone.add_argument("url", help="remote URL, e.g. http://127.0.0.1:8000/alice/song")
    clone.add_argument(
        "dest", nargs="?", type=Path, help="folder to create (default: the repo name)"
    )
    clone.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    clone.add_argument(
        "--no-zstd",
        dest="zstd",
        action="store_false",
        help="ask for the uncompressed pack (more bytes, no decoding: a fast link, a slow CPU)",
    )
    clone.set_defaults(handler="musehub.cli.clone:run_clone")

    pull = commands.add_parser(
        "pull",
        help="fetch a clone's remote and fast-forward its branch: musehub pull [DIR]",
    )
    pull.add_argument(
        "dir", nargs="?", type=Path, help="the clone (default: the current folder or above)"
    )
    pull.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    pull.set_defaults(handler="musehub.cli.pull:run_pull")

    synth = commands.add_parser(
        "synth", help="generate a deterministic synthetic repository and push it to URL"
    )
    synth.add_argument("url", help="remote URL of an existing (empty) repository")
    synth.add_argument(
        "--token",
        default=os.environ.get("MUSEHUB_TOKEN"),
        help="push token of the repo's owner (default: $MUSEHUB_TOKEN)",
    )
    synth.add_argument(
        "--preset", default="gabriel-muse", help="gabriel-muse (default) or gabriel-muse-10x"
    )
    synth.add_argument("--commits", type=int)
    synth.add_argument("--files", type=int)
    synth.add_argument("--file-size", type=int, help="mean file size in bytes")
    synth.add_argument("--branches", type=int)
    synth.add_argument("--blobs", type=int, help="distinct blobs over the whole history")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--scale", type=int, default=1, help="multiply history and blob bytes")
    synth.add_argument("-q", "--quiet", action="store_true")
    synth.set_defaults(handler="musehub.cli.synth:run_synth")
