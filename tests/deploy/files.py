"""deploy/ read as an engine would: the Dockerfile's instructions and the compose services."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ROOT = DEPLOY.parent
MUSEHUB_IMAGE = "musehub:latest"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """`["a", "b"]` arguments as a list (the form CMD and ENTRYPOINT should use)."""
        parsed = json.loads(self.arguments)
        assert isinstance(parsed, list), self
        return [str(part) for part in parsed]


def dockerfile(path: Path = DEPLOY / "Dockerfile") -> list[Instruction]:
    """Instructions in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append(Instruction(keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_env(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            for pair in instruction.arguments.split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def musehub_services(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the hub's image."""
    return {
        name: service
        for name, service in spec["services"].items()
        if service.get("image") == MUSEHUB_IMAGE
    }


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the other spelling: ["NAME=value", ...]
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def container_ports(service: dict[str, Any]) -> set[int]:
    """The container side of each `ports` entry ("host:container")."""
    return {int(str(entry).rsplit(":", 1)[-1].split("/")[0]) for entry in service.get("ports", [])}
