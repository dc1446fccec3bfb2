"""One `musehub clone` in a process of its own, so its peak RSS is the client's alone.

    python -m bench.clone_child '{"url": ..., "dest": ...}'

Prints one JSON line: peak RSS (VmHWM, KiB) once the client is imported and after the clone,
seconds, pack bytes. The clone is deleted afterwards."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench.rss import peak_rss_kib
from musehub.client.clone import clone


def run(job: dict[str, Any]) -> dict[str, Any]:
    dest = Path(job["dest"])
    before = peak_rss_kib()
    began = time.perf_counter()
    try:
        result = asyncio.run(clone(job["url"], dest, progress=False))
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    return {
        "rss_before_kib": before,
        "rss_peak_kib": peak_rss_kib(),
        "seconds": time.perf_counter() - began,
        "pack_bytes": result.bytes,
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
