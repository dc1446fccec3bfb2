"""`musehub dev` and `musehub migrate`."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from musehub.settings import load_settings


def _settings_from(args: argparse.Namespace) -> Any:
    overrides: dict[str, Any] = {}
    if getattr(args, "state_dir", None) is not None:
        overrides["state_dir"] = args.state_dir
    settings = load_settings(**overrides)
    if getattr(args, "port", None) is not None:
        settings.api.port = args.port
    return settings


def run_dev(args: argparse.Namespace) -> int:
    from musehub.devstack.stack import DevStack

    return DevStack(_settings_from(args)).run()


def run_migrate(args: argparse.Namespace) -> int:
    from musehub.db.migrate import upgrade_url_to_head

    settings = load_settings()
    if settings.database.url is None:
        raise RuntimeError("set MUSEHUB_DATABASE_URL to the database to migrate")
    asyncio.run(upgrade_url_to_head(settings.database.url))
    print("musehub migrate: database is at the newest schema")
    return 0
