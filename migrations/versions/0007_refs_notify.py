"""refs notify: every change to a repo's branches or to the repo row is announced on a channel

Each API process keeps a repo's refs (its branch heads, default branch and visibility) for about
a second, so a clone's head set costs no database work. A push through another process, or a
branch changed by hand, left those refs stale for that second: a CI job started by a push could
clone the commit before it. Triggers now send `NOTIFY musehub_refs, '<owner>/<slug>'` with every
such change; PostgreSQL delivers it when the transaction commits, and each API process listens
(`musehub.services.refs_changes`) and forgets the repo at once, whichever path changed it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 00:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

CHANNEL = "musehub_refs"  # musehub.services.refs_changes.CHANNEL

_BRANCH_FUNCTION = f"""
CREATE FUNCTION musehub_notify_branch_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed text := CASE WHEN TG_OP = 'DELETE' THEN OLD.repo_id ELSE NEW.repo_id END;
BEGIN
    PERFORM pg_notify('{CHANNEL}', r.owner || '/' || r.slug)
    FROM musehub_repos r WHERE r.repo_id = changed;
    RETURN NULL;
END
$$
"""

_REPO_FUNCTION = f"""
CREATE FUNCTION musehub_notify_repo_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', OLD.owner || '/' || OLD.slug);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(_BRANCH_FUNCTION)
    op.execute(
        "CREATE TRIGGER musehub_branches_notify AFTER INSERT OR UPDATE OR DELETE "
        "ON musehub_branches FOR EACH ROW EXECUTE FUNCTION musehub_notify_branch_change()"
    )
    op.execute(_REPO_FUNCTION)
    op.execute(
        "CREATE TRIGGER musehub_repos_notify AFTER UPDATE OR DELETE "
        "ON musehub_repos FOR EACH ROW EXECUTE FUNCTION musehub_notify_repo_change()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER musehub_repos_notify ON musehub_repos")
    op.execute("DROP FUNCTION musehub_notify_repo_change()")
    op.execute("DROP TRIGGER musehub_branches_notify ON musehub_branches")
    op.execute("DROP FUNCTION musehub_notify_branch_change()")
