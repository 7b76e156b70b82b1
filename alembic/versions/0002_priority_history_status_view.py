"""priority, history, the download_status view and the dlstore_queue pause switch.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Upgrade keeps every row (on a 0001 database and on an adopted seed table alike):
it adds ``priority INTEGER DEFAULT 0`` and ``history TEXT`` with ``ALTER TABLE ADD
COLUMN``, rebuilds ``idx_download_pending`` in the claim's order (status, then
priority DESC, created_at, id),
creates dlstore's own table ``dlstore_queue`` and the view ``download_status``
(the seed's status response: ``speed`` like ``"5.2 MB/s"``, ``eta`` like
``"00:02:15"``), and on PostgreSQL the function ``dlstore_json_array`` that lets a
transition append to a ``history`` the API may have filled with anything.
Downgrade removes all of it and restores 0001's pending index, rows kept.

The view is written here, per dialect, and frozen with this revision: a later
revision that changes it drops and recreates it. Any later SQLite batch operation
on download_tasks (a table copy) must drop the view first and recreate it after.
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLE = "download_tasks"
QUEUE = "dlstore_queue"
VIEW = "download_status"
PENDING_WHERE = "status = 'pending'"
#: NULLs after every number on both: SQLite's DESC does that (and refuses NULLS LAST here).
PRIORITY_DESC = {"sqlite": "priority DESC", "postgresql": "priority DESC NULLS LAST"}
#: ETAs are shown up to this (99:59:59), so that "HH:MM:SS" keeps two-digit hours.
ETA_CAP_SECONDS = 99 * 3600 + 59 * 60 + 59

#: The text as a jsonb array; '[]' if it is NULL, not JSON, or JSON but not an array.
#: PostgreSQL 15 has no non-raising JSON check (pg_input_is_valid is 16+), hence a function.
JSON_ARRAY_FUNCTION = """
CREATE OR REPLACE FUNCTION dlstore_json_array(value text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF jsonb_typeof(value::jsonb) = 'array' THEN
        RETURN value::jsonb;
    END IF;
    RETURN '[]'::jsonb;
EXCEPTION WHEN others THEN
    RETURN '[]'::jsonb;
END
$$
"""

#: Only a downloading row has a speed or an ETA; a negative or (on SQLite) non-numeric
#: value the API wrote counts as unknown. Integers from here on, on both databases.
CLEAN_SPEED = {
    "sqlite": "CASE WHEN status = 'downloading' AND typeof(speed_bps) IN ('integer', 'real') "
    "AND speed_bps >= 0 THEN CAST(speed_bps AS INTEGER) END",
    "postgresql": "CASE WHEN status = 'downloading' AND speed_bps >= 0 THEN speed_bps END",
}
CLEAN_ETA = {
    "sqlite": "CASE WHEN status = 'downloading' AND typeof(eta_seconds) IN ('integer', 'real') "
    f"AND eta_seconds >= 0 THEN min(CAST(eta_seconds AS INTEGER), {ETA_CAP_SECONDS}) END",
    "postgresql": "CASE WHEN status = 'downloading' AND eta_seconds >= 0 "
    f"THEN least(eta_seconds, {ETA_CAP_SECONDS}) END",
}
#: eta_s (0..ETA_CAP_SECONDS) as HH:MM:SS.
FORMAT_ETA = {
    "sqlite": "printf('%02d:%02d:%02d', eta_s / 3600, eta_s / 60 % 60, eta_s % 60)",
    "postgresql": "lpad(CAST(eta_s / 3600 AS TEXT), 2, '0') || ':' "
    "|| lpad(CAST(eta_s / 60 % 60 AS TEXT), 2, '0') || ':' "
    "|| lpad(CAST(eta_s % 60 AS TEXT), 2, '0')",
}
#: Decimal units (1 MB = 1,000,000 bytes), one decimal, rounded half up. Each unit is
#: used while its rounded value stays below 1000 ("999.9 KB/s", then "1.0 MB/s").
SPEED_UNITS = (("KB/s", 1_000, 999_950), ("MB/s", 1_000_000, 999_950_000))
LAST_SPEED_UNIT = ("GB/s", 1_000_000_000)


def _tenths(unit: int, suffix: str) -> str:
    """bps in ``unit``s with one decimal, in integer arithmetic (the same on both
    databases, and no overflow even at the largest BIGINT)."""
    step = unit // 10
    tenths = f"(bps / {step} + CASE WHEN bps % {step} >= {step // 2} THEN 1 ELSE 0 END)"
    return f"CAST({tenths} / 10 AS TEXT) || '.' || CAST({tenths} % 10 AS TEXT) || ' {suffix}'"


def _speed_sql() -> str:
    cases = ["WHEN bps < 1000 THEN CAST(bps AS TEXT) || ' B/s'"]
    cases += [f"WHEN bps < {below} THEN {_tenths(unit, name)}" for name, unit, below in SPEED_UNITS]
    name, unit = LAST_SPEED_UNIT
    lines = "\n        ".join(["WHEN bps IS NULL THEN NULL", *cases, f"ELSE {_tenths(unit, name)}"])
    return f"CASE\n        {lines}\n    END"


def view_sql(dialect: str) -> str:
    """``CREATE VIEW download_status``: one row per task, the seed's status response."""
    return f"""
CREATE VIEW {VIEW} AS
SELECT
    id AS task_id, status, progress, downloaded_segments, total_segments, current_file,
    {_speed_sql()} AS speed,
    CASE WHEN eta_s IS NULL THEN NULL ELSE {FORMAT_ETA[dialect]} END AS eta,
    message, name, url, created_at, started_at, completed_at, error_message, output_path
FROM (
    SELECT
        id, status, progress, downloaded_segments, total_segments, current_file, message,
        name, url, created_at, started_at, completed_at, error_message, output_path,
        {CLEAN_SPEED[dialect]} AS bps,
        {CLEAN_ETA[dialect]} AS eta_s
    FROM {TABLE}
) AS t
"""


def _create_pending_index(columns: str) -> None:
    op.execute(f"CREATE INDEX idx_download_pending ON {TABLE} ({columns}) WHERE {PENDING_WHERE}")


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    inspector = sa.inspect(bind)
    existing = {c["name"] for c in inspector.get_columns(TABLE)}
    for column in (
        sa.Column("priority", sa.Integer(), server_default=sa.text("0")),
        sa.Column("history", sa.Text()),
    ):
        if column.name not in existing:
            op.add_column(TABLE, column)
    op.drop_index("idx_download_pending", table_name=TABLE, if_exists=True)
    # status leads so that SQLite's planner picks this index over idx_download_status.
    _create_pending_index(f"status, {PRIORITY_DESC[dialect]}, created_at, id")
    if not inspector.has_table(QUEUE):
        op.create_table(
            QUEUE,
            sa.Column("name", sa.Text(), primary_key=True),
            sa.Column("paused", sa.Integer(), nullable=False, server_default=sa.text("0")),
            sa.Column("reason", sa.Text()),
            sa.Column("updated_at", sa.Text()),
        )
    if dialect == "postgresql":
        op.execute(JSON_ARRAY_FUNCTION)
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
    op.execute(view_sql(dialect))


def downgrade() -> None:
    # The view first: SQLite's table copy below refuses to rename under a view.
    op.execute(f"DROP VIEW IF EXISTS {VIEW}")
    op.drop_table(QUEUE, if_exists=True)
    op.drop_index("idx_download_pending", table_name=TABLE, if_exists=True)
    with op.batch_alter_table(TABLE, recreate="auto") as batch:
        batch.drop_column("history")
        batch.drop_column("priority")
    _create_pending_index("created_at, id")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS dlstore_json_array(text)")
