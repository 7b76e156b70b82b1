"""PostgreSQL: NOTIFY dlstore_tasks when a row becomes pending or the pause switch changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Daemons LISTEN on the channel ``dlstore_tasks`` (:mod:`dlstore.wakeup`) and claim at
once instead of at their next poll. The function ``dlstore_notify()`` sends the
payload ``<schema>.<table>`` (so that a daemon ignores other schemas' rows, and one
transaction's many rows make one notification); two triggers call it:

    dlstore_tasks_notify   AFTER INSERT OR UPDATE OF status ON download_tasks,
                           for each row that is then 'pending' (the API's create and
                           retry, dlstore's requeue and release)
    dlstore_queue_notify   AFTER INSERT OR UPDATE ON dlstore_queue (pause, resume)

SQLite has no NOTIFY: daemons watch ``PRAGMA data_version`` instead, and this
revision adds nothing there. Downgrade drops the triggers and the function.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CHANNEL = "dlstore_tasks"
FUNCTION = "dlstore_notify"
TRIGGERS = {
    "dlstore_tasks_notify": (
        "download_tasks",
        "AFTER INSERT OR UPDATE OF status ON download_tasks FOR EACH ROW "
        "WHEN (NEW.status = 'pending')",
    ),
    "dlstore_queue_notify": (
        "dlstore_queue",
        "AFTER INSERT OR UPDATE ON dlstore_queue FOR EACH ROW",
    ),
}

NOTIFY_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(NOTIFY_FUNCTION)
    for name, (table, when) in TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        op.execute(f"CREATE TRIGGER {name} {when} EXECUTE PROCEDURE {FUNCTION}()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (table, _) in TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
