"""mpack encodings: zstd copies of stored packs, for clients that send mpack-zstd

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLE = "musehub_mpack_encodings"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("mpack_id", sa.Text(), nullable=False),
        sa.Column("encoding", sa.String(length=16), nullable=False),
        sa.Column("repo_id", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["musehub_repos.repo_id"],
            name=op.f("fk_musehub_mpack_encodings_repo_id_musehub_repos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("mpack_id", "encoding", name=op.f("pk_musehub_mpack_encodings")),
    )
    op.create_index(op.f("ix_musehub_mpack_encodings_repo_id"), TABLE, ["repo_id"], unique=False)


def downgrade() -> None:
    # The compressed objects stay in storage; with no row naming them the orphan sweep of the
    # older code deletes them after its grace period.
    op.drop_index(op.f("ix_musehub_mpack_encodings_repo_id"), table_name=TABLE)
    op.drop_table(TABLE)
