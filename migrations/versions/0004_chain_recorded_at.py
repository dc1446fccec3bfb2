"""cache rows: recorded_at, the database's time when a row's chain was last recorded

A top-up is planned by walking from the new want set only as far as what the base row's chain
holds; `recorded_at` (the database clock, never a host's) tells which commits it cannot hold:
those the hub received after it (musehub/services/top_ups.py). Rows from before it have none and
are planned the long way.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CACHE = "musehub_fetch_mpack_cache"


def upgrade() -> None:
    op.add_column(CACHE, sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column(CACHE, "recorded_at")
