"""parts: the snapshots and objects each stored part holds

A top-up planned on a chain leaves out the records the chain's parts hold already, so a chain
carries each record once (musehub/services/top_ups.py); before, a top-up left out only those of
its boundary snapshots, and a joined chain carried 6-10 % more bytes than one fresh base. Parts
from before this revision have no rows and are planned as before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLE = "musehub_mpack_part_records"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("mpack_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("repo_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["musehub_repos.repo_id"],
            name=op.f("fk_musehub_mpack_part_records_repo_id_musehub_repos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "mpack_id", "kind", "record_id", name=op.f("pk_musehub_mpack_part_records")
        ),
    )
    op.create_index(op.f("ix_musehub_mpack_part_records_repo_id"), TABLE, ["repo_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_musehub_mpack_part_records_repo_id"), table_name=TABLE)
    op.drop_table(TABLE)
