"""The hub's tables. Every content row is keyed by (repo_id, content id): two repos that share
a file must not clash, and a row of one repo can never answer for another."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations can name what they drop.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CONTENT_ID = String(64)  # lowercase hex sha256
MPACK_CACHE_TTL_SQL = "now() + interval '7 days'"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _now_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Repo(Base):
    __tablename__ = "musehub_repos"
    __table_args__ = (
        UniqueConstraint("owner", "slug"),
        CheckConstraint("visibility IN ('public', 'private')", name="visibility"),
        CheckConstraint("domain IN ('code', 'midi', 'scaffold')", name="domain"),
    )

    repo_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    slug: Mapped[str] = mapped_column(String(100))
    visibility: Mapped[str] = mapped_column(String(16), server_default="public")
    default_branch: Mapped[str] = mapped_column(String(255), server_default="main")
    domain: Mapped[str] = mapped_column(String(16), server_default="code")
    created_at: Mapped[datetime] = _now_column()
    pushed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Branch(Base):
    __tablename__ = "musehub_branches"

    repo_id: Mapped[str] = mapped_column(
        ForeignKey("musehub_repos.repo_id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    head_commit_id: Mapped[str] = mapped_column(CONTENT_ID)
    updated_at: Mapped[datetime] = _now_column()


class Commit(Base):
    __tablename__ = "musehub_commits"
    __table_args__ = (
        Index(None, "repo_id", "parent_commit_id"),
        Index(None, "repo_id", "parent2_commit_id"),
        Index(None, "repo_id", "snapshot_id"),
    )

    repo_id: Mapped[str] = mapped_column(
        ForeignKey("musehub_repos.repo_id", ondelete="CASCADE"), primary_key=True
    )
    commit_id: Mapped[str] = mapped_column(CONTENT_ID, primary_key=True)
    parent_commit_id: Mapped[str | None] = mapped_column(CONTENT_ID)
    parent2_commit_id: Mapped[str | None] = mapped_column(CONTENT_ID)
    snapshot_id: Mapped[str] = mapped_column(CONTENT_ID)
    # The whole CommitDict exactly as the client sent it, msgpack-encoded: a clone returns
    # these bytes unchanged (every key, every type, bin stays bin).
    record: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _now_column()


class Snapshot(Base):
    __tablename__ = "musehub_snapshots"

    repo_id: Mapped[str] = mapped_column(
        ForeignKey("musehub_repos.repo_id", ondelete="CASCADE"), primary_key=True
    )
    snapshot_id: Mapped[str] = mapped_column(CONTENT_ID, primary_key=True)
    # {path: object_id}, queryable for the object closure of a set of snapshots.
    manifest: Mapped[dict[str, str]] = mapped_column(JSONB)
    # The whole SnapshotDict as the client sent it, msgpack-encoded.
    record: Mapped[bytes] = mapped_column(LargeBinary)


class StoredObject(Base):
    __tablename__ = "musehub_objects"

    repo_id: Mapped[str] = mapped_column(
        ForeignKey("musehub_repos.repo_id", ondelete="CASCADE"), primary_key=True
    )
    object_id: Mapped[str] = mapped_column(CONTENT_ID, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _now_column()


class AccessToken(Base):
    __tablename__ = "musehub_access_tokens"
    __table_args__ = (Index(None, "user_name"),)

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64))
    # sha256 of the token; the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(CONTENT_ID, unique=True)
    created_at: Mapped[datetime] = _now_column()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FetchMPackCache(Base):
    """FMC_01: what answers a fetch of (repo, want set), one row per want set.

    A single-branch row has tip_commit_id = its one want; the row for a multi-branch head set
    (what `muse clone` asks for) has tip_commit_id NULL, so it coexists with the single-tip rows
    under the unique (repo_id, tip_commit_id).

    The answer is a chain of stored packs (its MPackChainLink rows, base first) and, once made,
    the whole chain as one object, `mpack_id` with its `sha256`, for clients that take one URL.
    A row from before chains has `mpack_id` only, and no links."""

    __tablename__ = "musehub_fetch_mpack_cache"
    __table_args__ = (
        UniqueConstraint("repo_id", "tip_commit_id"),
        CheckConstraint(
            "(tip_commit_id IS NULL) = (cardinality(want_commit_ids) > 1)", name="tip_or_head_set"
        ),
        CheckConstraint("(mpack_id IS NULL) = (sha256 IS NULL)", name="one_pack_with_its_hash"),
        Index(None, "expires_at"),
        Index(None, "mpack_id"),
    )

    # sha256 over repo_id and the normalised (deduped, sorted) want set.
    cache_id: Mapped[str] = mapped_column(CONTENT_ID, primary_key=True)
    repo_id: Mapped[str] = mapped_column(ForeignKey("musehub_repos.repo_id", ondelete="CASCADE"))
    tip_commit_id: Mapped[str | None] = mapped_column(CONTENT_ID)
    # Storage key of the whole answer as one pack (content-addressed by its sha256), once made.
    mpack_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now_column()
    expires_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text(MPACK_CACHE_TTL_SQL), nullable=False
    )
    # Bytes of the whole answer as one pack (the joined chain's, whether or not it was made).
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(CONTENT_ID)
    want_commit_ids: Mapped[list[str]] = mapped_column(ARRAY(CONTENT_ID))
    commit_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    object_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    last_hit_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The database's time when the row's chain was last recorded: every commit its chain holds
    # was received before it, so a commit received after it is one the chain cannot hold (a
    # top-up is planned from that, without walking the history: services/top_ups.py). The
    # database's clock, not a host's: the commits' own `created_at` is the database's too.
    recorded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MPackPart(Base):
    """One stored pack that is a part of chains: a base (all a position reaches) or a top-up
    (what a position adds to the one before it). Immutable and content-addressed, so chains
    that share a prefix, or lines whose pushes add the same records, share parts. The section
    spans let parts be joined into one pack without decoding them (musehub/mpack/chain.py)."""

    __tablename__ = "musehub_mpack_parts"
    __table_args__ = (Index(None, "repo_id"),)

    mpack_id: Mapped[str] = mapped_column(Text, primary_key=True)
    repo_id: Mapped[str] = mapped_column(ForeignKey("musehub_repos.repo_id", ondelete="CASCADE"))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(CONTENT_ID)
    commit_count: Mapped[int] = mapped_column(BigInteger)
    snapshot_count: Mapped[int] = mapped_column(BigInteger)
    object_count: Mapped[int] = mapped_column(BigInteger)
    # [start, end) byte offsets of each section's records in the stored pack.
    commits_start: Mapped[int] = mapped_column(BigInteger)
    commits_end: Mapped[int] = mapped_column(BigInteger)
    snapshots_start: Mapped[int] = mapped_column(BigInteger)
    snapshots_end: Mapped[int] = mapped_column(BigInteger)
    objects_start: Mapped[int] = mapped_column(BigInteger)
    objects_end: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _now_column()


class MPackPartRecord(Base):
    """A snapshot (`kind` 1) or object (`kind` 2) that a stored part holds, so that a top-up
    planned on a chain leaves out what the chain's parts hold already (a reverted file, an old
    blob used again, a tree seen before): a chain joined or applied part by part then carries
    each record once, like one freshly built base. Keyed by the part's key like its zstd copy;
    GC deletes them with the part's description (a build that never uploaded leaves rows for
    a key the same bytes would have again). Parts from before this table have none: a top-up
    on them leaves out only the boundary snapshots' records, as before."""

    __tablename__ = "musehub_mpack_part_records"
    __table_args__ = (Index(None, "repo_id"),)

    mpack_id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    record_id: Mapped[str] = mapped_column(CONTENT_ID, primary_key=True)
    repo_id: Mapped[str] = mapped_column(ForeignKey("musehub_repos.repo_id", ondelete="CASCADE"))


class PullPack(Base):
    """A pack built for a pull no chain answers, kept `pull_packs.REUSE_SECONDS` so that the same
    pull from another API process (the same want set, and the same commits of the repo in
    `have`) is answered with it instead of a build of its own. No cache row names the pack: it
    goes with the orphan sweep, whose grace outlasts the reuse many times over."""

    __tablename__ = "musehub_pull_packs"
    __table_args__ = (Index(None, "repo_id"), Index(None, "built_at"))

    pull_key: Mapped[str] = mapped_column(CONTENT_ID, primary_key=True)
    repo_id: Mapped[str] = mapped_column(ForeignKey("musehub_repos.repo_id", ondelete="CASCADE"))
    mpack_id: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(CONTENT_ID)
    built_at: Mapped[datetime] = _now_column()


class MPackChainLink(Base):
    """Part `position` (0: the base) of the chain answering a cache row, and the want set whose
    whole history the chain holds up to and including it: a fetch whose `have` holds that want
    set needs only the parts after it."""

    __tablename__ = "musehub_mpack_chain_links"
    __table_args__ = (Index(None, "mpack_id"),)

    cache_id: Mapped[str] = mapped_column(
        ForeignKey("musehub_fetch_mpack_cache.cache_id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    mpack_id: Mapped[str] = mapped_column(ForeignKey("musehub_mpack_parts.mpack_id"))
    want_commit_ids: Mapped[list[str]] = mapped_column(ARRAY(CONTENT_ID))


class MPackEncoding(Base):
    """A compressed copy of a stored pack (`mpack_id`, the raw pack's key), stored beside it
    under `musehub.mpack.encoding.encoded_key`: what clients that sent `mpack-zstd` download.
    Made on the first such request and kept as long as the raw pack (GC deletes them together);
    `size_bytes` and `sha256` are of the compressed bytes, what such a client is promised."""

    __tablename__ = "musehub_mpack_encodings"
    __table_args__ = (Index(None, "repo_id"),)

    mpack_id: Mapped[str] = mapped_column(Text, primary_key=True)
    encoding: Mapped[str] = mapped_column(String(16), primary_key=True)
    repo_id: Mapped[str] = mapped_column(ForeignKey("musehub_repos.repo_id", ondelete="CASCADE"))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(CONTENT_ID)
    created_at: Mapped[datetime] = _now_column()
