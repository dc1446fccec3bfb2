"""pull packs: a pack built for a pull no chain answers, shared with the same pull elsewhere

A pull whose `have` holds no position of a chain is built on demand. Identical pulls at the same
moment (CI runners at the same commit) shared one build within an API process; this table lets
a pull in another process find the pack the first one built (under an advisory lock on the same
key) instead of building its own. Rows are reused for a minute; the packs no cache row names go
with the orphan sweep as before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLE = "musehub_pull_packs"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("pull_key", sa.String(length=64), nullable=False),
        sa.Column("repo_id", sa.String(length=64), nullable=False),
        sa.Column("mpack_id", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "built_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["musehub_repos.repo_id"],
            name=op.f("fk_musehub_pull_packs_repo_id_musehub_repos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pull_key", name=op.f("pk_musehub_pull_packs")),
    )
    op.create_index(op.f("ix_musehub_pull_packs_repo_id"), TABLE, ["repo_id"], unique=False)
    op.create_index(op.f("ix_musehub_pull_packs_built_at"), TABLE, ["built_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_musehub_pull_packs_built_at"), table_name=TABLE)
    op.drop_index(op.f("ix_musehub_pull_packs_repo_id"), table_name=TABLE)
    op.drop_table(TABLE)
