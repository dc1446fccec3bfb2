"""Load generators for `POST /fetch`: one sequential client (httpx, keep-alive) and `wrk` with
64 connections, POSTing a msgpack body from a Lua script."""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.hub import HEADERS
from bench.result import percentile

CACHE_HEADER = "x-musehub-cache"
WRK_SCRIPT = """\
local f = assert(io.open(os.getenv("MUSEHUB_BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/x-msgpack"
wrk.headers["Accept"] = "application/x-msgpack"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) not_hit = 0 end
function response(status, headers, body)
  if headers["x-musehub-cache"] ~= "HIT" then not_hit = not_hit + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("not_hit") end
  io.write(string.format("not_hit %d\\n", total))
end
"""


@dataclass
class Sequential:
    latencies: list[float] = field(default_factory=list)  # seconds
    first_byte: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  # "200 HIT" -> count
    bytes: int = 0

    def p(self, pct: float, first_byte: bool = False) -> float:
        return percentile(self.first_byte if first_byte else self.latencies, pct)

    @property
    def all_hits(self) -> bool:
        return set(self.statuses) == {"200 HIT"}


def sequential(
    url: str, body: bytes, count: int, *, timeout: float = 600.0, max_seconds: float = 300.0
) -> Sequential:
    """`count` requests one after another on one connection (stops early after max_seconds)."""
    out = Sequential()
    deadline = time.monotonic() + max_seconds
    with httpx.Client(timeout=timeout, headers=HEADERS) as client:
        for _ in range(count):
            began = time.perf_counter()
            with client.stream("POST", url, content=body) as response:
                out.first_byte.append(time.perf_counter() - began)
                for chunk in response.iter_bytes(1 << 20):
                    out.bytes += len(chunk)
            out.latencies.append(time.perf_counter() - began)
            key = f"{response.status_code} {response.headers.get(CACHE_HEADER, '-')}"
            out.statuses[key] = out.statuses.get(key, 0) + 1
            if time.monotonic() > deadline:
                break
    return out


@dataclass
class WrkResult:
    requests_per_s: float
    latency_ms: dict[str, float]  # "50%" .. "99%"
    requests: int
    non_2xx: int
    socket_errors: int
    not_hit: int
    raw: str


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(
    url: str,
    body: bytes | None,
    work: Path,
    *,
    connections: int = 64,
    threads: int = 2,
    seconds: int = 10,
) -> WrkResult:
    """POST `body` (msgpack) to `url` over `connections` connections; `body=None`: plain GET."""
    body_path, script = work / "wrk-body.msgpack", work / "fetch.lua"
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
    ]
    if body is not None:
        body_path.write_bytes(body)
        script.write_text(WRK_SCRIPT)
        command += ["-s", str(script)]
    env = {**os.environ, "MUSEHUB_BENCH_BODY": str(body_path)}
    done = subprocess.run(
        [*command, url], capture_output=True, text=True, env=env, timeout=seconds + 60, check=True
    )
    text = done.stdout
    latency = {
        m[0]: float(m[1]) * _UNITS[m[2]]
        for m in re.findall(r"^\s+(\d+%)\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    }
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    not_hit = re.search(r"not_hit (\d+)", text)
    return WrkResult(
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),  # type: ignore[union-attr]
        latency_ms=latency,
        requests=int(re.search(r"(\d+) requests in", text).group(1)),  # type: ignore[union-attr]
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
        not_hit=int(not_hit.group(1)) if not_hit else -1,
        raw=text,
    )
