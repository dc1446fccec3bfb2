"""What the client side may import: `musehub/client` is a library below the CLI and the
synthetic generator (no import loop), and `musehub clone` loads neither the generator nor the
server's stack, so it starts fast."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from musehub.cli.main import load_handler
from musehub.cli.parser import build_parser

PACKAGE = Path(__file__).resolve().parents[2] / "musehub"


def _musehub_imports(package: str) -> set[str]:
    """The `musehub.*` modules that the modules of `musehub/<package>/` import."""
    found: set[str] = set()
    for path in (PACKAGE / package).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("musehub.")}


def test_the_client_imports_only_itself_and_the_mpack_codec() -> None:
    outside = {
        name
        for name in _musehub_imports("client")
        if not name.startswith(("musehub.client.", "musehub.mpack."))
    }
    assert outside == set()


def test_synth_uses_the_client_and_nothing_of_the_cli() -> None:
    imports = _musehub_imports("synth")
    assert not any(name.startswith("musehub.cli.") for name in imports)
    assert "musehub.client.push" in imports  # the dependency runs one way: synth -> client


@pytest.mark.parametrize(
    "argv",
    [
        ["clone", "http://h/a/b"],
        ["pull"],
        ["synth", "http://h/a/b"],
        ["gc"],
        ["repo", "create", "a/b"],
    ],
)
def test_every_handler_the_parser_names_loads(argv: list[str]) -> None:
    assert callable(load_handler(build_parser().parse_args(argv).handler))


@pytest.mark.parametrize("command", ["clone", "pull"])
def test_the_client_commands_load_no_generator_and_no_server_stack(command: str) -> None:
    probe = (
        f"import sys, musehub.cli.{command}; "
        "print(' '.join(m for m in ('musehub.synth', 'sqlalchemy', 'temporalio', 'fastapi', "
        "'boto3', 'aioboto3') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []


def test_help_loads_only_the_parser() -> None:
    """`musehub clone --help` has a start-up budget (100 ms, bare python takes 40-90 ms here):
    neither the client, nor asyncio, nor `typing` (3 ms) is loaded to print it."""
    probe = (
        "import sys\n"
        "from musehub.cli.main import main\n"
        "try:\n"
        "    main(['clone', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('typing', 'asyncio', 'musehub.client')\n"
        "print('loaded:', *(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1].split() == ["loaded:"]
