"""deploy/ checked against the code without a container engine: the files parse, the image holds
the package and runs it as a user, every command is a `musehub` command, every variable the
compose file sets is a setting the hub reads, and the ports line up with the health checks."""

from __future__ import annotations

import os
import re
import tomllib

import pytest
from pydantic import BaseModel

from musehub.cli.main import load_handler
from musehub.cli.parser import build_parser
from musehub.settings import Settings, load_settings
from tests.deploy.files import (
    DEPLOY,
    ROOT,
    compose,
    container_ports,
    dockerfile,
    dockerfile_env,
    environment,
    musehub_services,
)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SOURCES = [ROOT / d for d in ("musehub", "api", "activities", "workflows", "migrations")]


def setting_variables() -> set[str]:
    """Every `MUSEHUB_*` variable `Settings` reads: one per field, groups with their prefix."""
    names = set()
    for name, field in Settings.model_fields.items():
        group = field.annotation
        if isinstance(group, type) and issubclass(group, BaseModel):
            names |= {f"MUSEHUB_{name}_{sub}".upper() for sub in group.model_fields}
        else:
            names.add(f"MUSEHUB_{name}".upper())
    return names


def variables_read_directly() -> set[str]:
    """`MUSEHUB_*` variables the code reads from the environment itself (the log level)."""
    pattern = re.compile(r"""os\.environ(?:\.get\(|\[)\s*["'](MUSEHUB_[A-Z0-9_]+)""")
    files = [ROOT / "worker.py", *(p for d in SOURCES for p in d.rglob("*.py"))]
    return {name for path in files for name in pattern.findall(path.read_text())}


def test_every_variable_the_compose_file_sets_is_a_setting() -> None:
    known = setting_variables() | variables_read_directly()
    assert "MUSEHUB_DATABASE_URL" in known and "MUSEHUB_LOG_LEVEL" in known
    for name, service in musehub_services(compose()).items():
        unknown = {v for v in environment(service) if v.startswith("MUSEHUB_")} - known
        assert not unknown, f"{name} sets {sorted(unknown)}, which nothing reads"
    image_env = dockerfile_env(dockerfile())
    assert not {v for v in image_env if v.startswith("MUSEHUB_")} - known


@pytest.mark.parametrize("service", ["migrate", "schedules", "api", "worker"])
def test_each_services_settings_load(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The values are valid too: the environment a container gets, image and service."""
    for name in [n for n in os.environ if n.startswith("MUSEHUB_")]:
        monkeypatch.delenv(name)
    env = {**dockerfile_env(dockerfile()), **environment(compose()["services"][service])}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.storage.backend == "s3"
    assert settings.database.url is not None and settings.temporal.address is not None


def test_every_hub_service_runs_a_musehub_command_of_the_image() -> None:
    assert PYPROJECT["project"]["scripts"]["musehub"] == "musehub.cli.main:main"
    spec = compose()
    services = musehub_services(spec)
    assert set(services) == {"migrate", "schedules", "api", "worker"}
    commands = {name: service["command"] for name, service in services.items()}
    commands["(image default)"] = next(i for i in dockerfile() if i.keyword == "CMD").exec_form()
    for name, command in commands.items():
        assert command[0] == "musehub", name
        args = build_parser().parse_args(command[1:])
        assert callable(load_handler(args.handler)), name
    for service in services.values():
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}


def test_compose_has_every_part_and_starts_them_in_order() -> None:
    services = compose()["services"]
    for part in ("postgres", "temporal", "temporal-ui", "minio", "api", "worker"):
        assert part in services, part
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on {needed}, which is not a service"
    for name in ("api", "worker"):
        after = services[name]["depends_on"]
        assert after["migrate"] == {"condition": "service_completed_successfully"}
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["schedules"]["depends_on"]["temporal"] == {"condition": "service_healthy"}


def test_the_image_installs_the_package_and_runs_it_as_a_user() -> None:
    instructions = dockerfile()
    keywords = [i.keyword for i in instructions]
    assert re.fullmatch(r"python:3\.\d+-slim", instructions[0].arguments), instructions[0]
    user = instructions[keywords.index("USER")].arguments
    assert user not in ("root", "0", "0:0")
    assert keywords.index("USER") < keywords.index("CMD")
    install = next(i for i in instructions if "pip install" in i.arguments)
    assert keywords.index("USER") > instructions.index(install)  # installed as root, run as user
    assert re.search(r"pip install \.(\s|$)", install.arguments)
    sources = {
        part for i in instructions if i.keyword == "COPY" for part in i.arguments.split()[:-1]
    }
    for source in sources:
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not there"
    packages = {
        p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    modules = {f"{m}.py" for m in PYPROJECT["tool"]["setuptools"]["py-modules"]}
    assert packages | modules | {"pyproject.toml", "README.md"} <= sources
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert not set(ignored) & sources, "the build context leaves out what the image copies"


def test_the_ports_line_up_with_the_health_checks() -> None:
    instructions = dockerfile()
    image_env = dockerfile_env(instructions)
    healthcheck = next(i for i in instructions if i.keyword == "HEALTHCHECK").arguments
    assert "/health/live'" in healthcheck and "MUSEHUB_API_PORT" in healthcheck
    exposed = {int(p) for i in instructions if i.keyword == "EXPOSE" for p in i.arguments.split()}
    api_port = int(image_env["MUSEHUB_API_PORT"])
    assert exposed == {api_port} and Settings.model_fields["api"].default.port == api_port
    services = compose()["services"]
    api_env = environment(services["api"])
    assert int(api_env.get("MUSEHUB_API_PORT", api_port)) in container_ports(services["api"])
    assert api_env["MUSEHUB_API_HOST"] == "0.0.0.0"  # reachable through the published port
    assert "healthcheck" not in services["api"]  # the image's own, on the same variable
    worker_env = environment(services["worker"])
    worker_check = " ".join(services["worker"]["healthcheck"]["test"])
    assert "MUSEHUB_TEMPORAL_WORKER_METRICS_PORT" in worker_check and "/metrics" in worker_check
    assert int(worker_env["MUSEHUB_TEMPORAL_WORKER_METRICS_PORT"]) > 0
    assert worker_env["MUSEHUB_TEMPORAL_WORKER_METRICS_HOST"] in ("0.0.0.0", "127.0.0.1")
    for name in ("migrate", "schedules"):  # one-shot steps: the image's check would fail them
        assert services[name]["healthcheck"] == {"disable": True}
