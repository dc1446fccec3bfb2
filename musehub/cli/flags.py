"""Command-line flags that override settings. Each flag given is exported as the `MUSEHUB_*`
variable it stands for before the settings are read, so this process and every process it
starts (uvicorn's workers build the app from the environment) read the same `Settings`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from musehub.settings import Settings, load_settings


def settings_with_flags(args: argparse.Namespace, flags: Mapping[str, str]) -> Settings:
    """`flags` maps an option's `dest` to its variable; options left out keep the settings."""
    for dest, variable in flags.items():
        value = getattr(args, dest, None)
        if value is not None:
            os.environ[variable] = _as_variable(value)
    return load_settings()


def _as_variable(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
