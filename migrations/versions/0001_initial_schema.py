"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 20:35:52.962059
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "musehub_access_tokens",
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_musehub_access_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_musehub_access_tokens_token_hash")),
    )
    op.create_index(
        op.f("ix_musehub_access_tokens_user_name"),
        "musehub_access_tokens",
        ["user_name"],
        unique=False,
    )
    op.create_table(
        "musehub_repos",
        sa.Column("repo_id", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("visibility", sa.String(length=16), server_default="public", nullable=False),
        sa.Column("default_branch", sa.String(length=255), server_default="main", nullable=False),
        sa.Column("domain", sa.String(length=16), server_default="code", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "domain IN ('code', 'midi', 'scaffold')", name=op.f("ck_musehub_repos_domain")
        ),
        sa.CheckConstraint(
            "visibility IN ('public', 'private')", name=op.f("ck_musehub_repos_visibility")
        ),
        sa.PrimaryKeyConstraint("repo_id", name=op.f("pk_musehub_repos")),
        sa.UniqueConstraint("owner", "slug", name=op.f("uq_musehub_repos_owner_slug")),
    )
    op.create_table(
        "musehub_branches",
        sa.Column("repo_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("head_commit_id", sa.String(length=64), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["musehub_repos.repo_id"],
            name=op.f("fk_musehub_branches_repo_id_musehub_repos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repo_id", "name", name=op.f("pk_musehub_branches")),
    )
    op.create_table(
        "musehub_commits",
        sa.Column("repo_id", sa.String(length=64), nullable=False),
        sa.Column("commit_id", sa.String(length=64), nullable=False),
        sa.Column("parent_commit_id", sa.String(length=64), nullable=True),
        sa.Column("parent2_commit_id", sa.String(length=64), nullable=True),
        sa.Column("snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("record", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["musehub_repos.repo_id"],
            name=op.f("fk_musehub_commits_repo_id_musehub_repos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repo_id", "commit_id", name=op.f("pk_musehub_commits")),
    )
    op.create_index(
        op.f("ix_musehub_commits_repo_id_parent2_commit_id"),
        "musehub_commits",
        ["repo_id", "parent2_commit_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_musehub_commits_repo_id_parent_commit_id"),
        "musehub_commits",
        ["repo_id", "parent_commit_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_musehub_commits_repo_id_snapshot_id"),
        "musehub_commits",
        ["repo_id", "snapshot_id"],
        unique=False,
    )
    op.create_table(
        "musehub_fetch_mpack_cache",
        sa.Column("cache_id", sa.String(length=64), nullable=False),
        sa.Column("repo_id", sa.String(length=64), nullable=False),
        sa.Column("tip_commit_id", sa.String(length=64), nullable=True),
        sa.Column("mpack_id", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "expires_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now() + interval '7 days'"),
            nullable=False,
        ),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("want_commit_ids", postgresql.ARRAY(sa.String(length=64)), nullable=False),
        sa.Column("commit_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("object_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_hit_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(tip_commit_id IS NULL) = (cardinality(want_commit_ids) > 1)",
            name=op.f("ck_musehub_fetch_mpack_cache_tip_or_head_set"),
        ),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["musehub_repos.repo_id"],
            name=op.f("fk_musehub_fetch_mpack_cache_repo_id_musehub_repos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("cache_id", name=op.f("pk_musehub_fetch_mpack_cache")),
        sa.UniqueConstraint(
            "repo_id",
            "tip_commit_id",
            name=op.f("uq_musehub_fetch_mpack_cache_repo_id_tip_commit_id"),
        ),
    )
    op.create_index(
        op.f("ix_musehub_fetch_mpack_cache_expires_at"),
        "musehub_fetch_mpack_cache",
        ["expires_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_musehub_fetch_mpack_cache_mpack_id"),
        "musehub_fetch_mpack_cache",
        ["mpack_id"],
        unique=False,
    )
    op.create_table(
        "musehub_objects",
        sa.Column("repo_id", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("storage_key", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["musehub_repos.repo_id"],
            name=op.f("fk_musehub_objects_repo_id_musehub_repos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repo_id", "object_id", name=op.f("pk_musehub_objects")),
    )
    op.create_table(
        "musehub_snapshots",
        sa.Column("repo_id", sa.String(length=64), nullable=False),
        sa.Column("snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("manifest", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("record", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["musehub_repos.repo_id"],
            name=op.f("fk_musehub_snapshots_repo_id_musehub_repos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repo_id", "snapshot_id", name=op.f("pk_musehub_snapshots")),
    )


def downgrade() -> None:
    op.drop_table("musehub_snapshots")
    op.drop_table("musehub_objects")
    op.drop_index(
        op.f("ix_musehub_fetch_mpack_cache_mpack_id"), table_name="musehub_fetch_mpack_cache"
    )
    op.drop_index(
        op.f("ix_musehub_fetch_mpack_cache_expires_at"), table_name="musehub_fetch_mpack_cache"
    )
    op.drop_table("musehub_fetch_mpack_cache")
    op.drop_index(op.f("ix_musehub_commits_repo_id_snapshot_id"), table_name="musehub_commits")
    op.drop_index(op.f("ix_musehub_commits_repo_id_parent_commit_id"), table_name="musehub_commits")
    op.drop_index(
        op.f("ix_musehub_commits_repo_id_parent2_commit_id"), table_name="musehub_commits"
    )
    op.drop_table("musehub_commits")
    op.drop_table("musehub_branches")
    op.drop_table("musehub_repos")
    op.drop_index(op.f("ix_musehub_access_tokens_user_name"), table_name="musehub_access_tokens")
    op.drop_table("musehub_access_tokens")
