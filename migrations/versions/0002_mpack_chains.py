"""mpack chains: stored parts, the chain of parts behind each cache row, one-pack optional

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CACHE = "musehub_fetch_mpack_cache"


def upgrade() -> None:
    op.create_table(
        "musehub_mpack_parts",
        sa.Column("mpack_id", sa.Text(), nullable=False),
        sa.Column("repo_id", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("commit_count", sa.BigInteger(), nullable=False),
        sa.Column("snapshot_count", sa.BigInteger(), nullable=False),
        sa.Column("object_count", sa.BigInteger(), nullable=False),
        sa.Column("commits_start", sa.BigInteger(), nullable=False),
        sa.Column("commits_end", sa.BigInteger(), nullable=False),
        sa.Column("snapshots_start", sa.BigInteger(), nullable=False),
        sa.Column("snapshots_end", sa.BigInteger(), nullable=False),
        sa.Column("objects_start", sa.BigInteger(), nullable=False),
        sa.Column("objects_end", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["musehub_repos.repo_id"],
            name=op.f("fk_musehub_mpack_parts_repo_id_musehub_repos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("mpack_id", name=op.f("pk_musehub_mpack_parts")),
    )
    op.create_index(
        op.f("ix_musehub_mpack_parts_repo_id"), "musehub_mpack_parts", ["repo_id"], unique=False
    )
    op.create_table(
        "musehub_mpack_chain_links",
        sa.Column("cache_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("mpack_id", sa.Text(), nullable=False),
        sa.Column("want_commit_ids", postgresql.ARRAY(sa.String(length=64)), nullable=False),
        sa.ForeignKeyConstraint(
            ["cache_id"],
            [f"{CACHE}.cache_id"],
            name=op.f("fk_musehub_mpack_chain_links_cache_id_musehub_fetch_mpack_cache"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["mpack_id"],
            ["musehub_mpack_parts.mpack_id"],
            name=op.f("fk_musehub_mpack_chain_links_mpack_id_musehub_mpack_parts"),
        ),
        sa.PrimaryKeyConstraint("cache_id", "position", name=op.f("pk_musehub_mpack_chain_links")),
    )
    op.create_index(
        op.f("ix_musehub_mpack_chain_links_mpack_id"),
        "musehub_mpack_chain_links",
        ["mpack_id"],
        unique=False,
    )
    # A chain row has no one-pack object until a client that takes one URL asks for it.
    op.alter_column(CACHE, "mpack_id", existing_type=sa.Text(), nullable=True)
    op.alter_column(CACHE, "sha256", existing_type=sa.String(length=64), nullable=True)
    op.create_check_constraint(
        op.f("ck_musehub_fetch_mpack_cache_one_pack_with_its_hash"),
        CACHE,
        "(mpack_id IS NULL) = (sha256 IS NULL)",
    )


def downgrade() -> None:
    # Rows without a one-pack object cannot be kept by the old schema: they are rebuilt.
    op.execute(f"DELETE FROM {CACHE} WHERE mpack_id IS NULL")
    op.drop_constraint(
        op.f("ck_musehub_fetch_mpack_cache_one_pack_with_its_hash"), CACHE, type_="check"
    )
    op.alter_column(CACHE, "sha256", existing_type=sa.String(length=64), nullable=False)
    op.alter_column(CACHE, "mpack_id", existing_type=sa.Text(), nullable=False)
    op.drop_index(
        op.f("ix_musehub_mpack_chain_links_mpack_id"), table_name="musehub_mpack_chain_links"
    )
    op.drop_table("musehub_mpack_chain_links")
    op.drop_index(op.f("ix_musehub_mpack_parts_repo_id"), table_name="musehub_mpack_parts")
    op.drop_table("musehub_mpack_parts")
