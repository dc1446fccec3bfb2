"""One pack build in a process of its own, so its peak RSS is the build's and nothing else's.

    python -m bench.build_child '{"mode": "hub"|"serial", "state_dir": ..., "database_url": ...,
                                  "api_port": ..., "repo_id": ..., "want": [...]}'

Prints one JSON line: peak RSS (VmHWM) before and after the build (KiB), seconds, pack bytes."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.baselines import serial_build
from bench.rss import peak_rss_kib
from musehub.db.engine import create_engine, session_factory
from musehub.services.mpack_build import build_and_upload
from musehub.settings import ApiSettings, DatabaseSettings, Settings
from musehub.storage import build_storage


async def build(job: dict[str, Any]) -> dict[str, Any]:
    settings = Settings(
        state_dir=Path(job["state_dir"]),
        database=DatabaseSettings(url=job["database_url"]),
        api=ApiSettings(port=job["api_port"]),
    )
    engine = create_engine(settings.database_url, pool_size=1)
    storage = build_storage(settings)
    try:
        async with session_factory(engine)() as session:
            await session.execute(text("SELECT 1"))  # connected before the baseline reading
            before = peak_rss_kib()
            began = time.perf_counter()
            if job["mode"] == "serial":
                serial = await serial_build(session, storage, job["repo_id"], job["want"])
                size = serial.pack_bytes
            else:
                built = await build_and_upload(
                    session,
                    job["repo_id"],
                    job["want"],
                    [],
                    storage=storage,
                    work_dir=settings.work_dir,
                    read_concurrency=settings.storage.read_concurrency,
                )
                digest = built.digest
                size = digest.size
            seconds = time.perf_counter() - began
    finally:
        await storage.aclose()
        await engine.dispose()
    return {
        "rss_before_kib": before,
        "rss_peak_kib": peak_rss_kib(),
        "seconds": seconds,
        "pack_bytes": size,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(build(json.loads(sys.argv[1])))))
