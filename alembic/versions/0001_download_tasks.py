"""download_tasks: create it, or adopt the one the video manager created from its DDL.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

On a database where the Rust app already ran its ``CREATE TABLE download_tasks``
this keeps every row: it adds dlstore's columns (nullable or defaulted, plain
``ALTER TABLE ADD COLUMN``), gives ``status`` and ``created_at`` the contract's
defaults where the app's DDL has none, and creates missing indexes. Downgrade
returns the table to the video manager's DDL, rows kept: the table is the app's
too, so dlstore never drops it.
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLE = "download_tasks"
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PENDING_WHERE = sa.text("status = 'pending'")
UTC_NOW = {
    "sqlite": "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
    "postgresql": "(to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))",
}


def _seed_columns(dialect: str) -> list[sa.Column]:
    return [
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        sa.Column("progress", sa.Integer(), server_default=sa.text("0")),
        sa.Column("total_segments", sa.Integer()),
        sa.Column("downloaded_segments", sa.Integer(), server_default=sa.text("0")),
        sa.Column("output_path", sa.Text()),
        sa.Column("created_at", sa.Text(), nullable=False, server_default=sa.text(_now(dialect))),
        sa.Column("started_at", sa.Text()),
        sa.Column("completed_at", sa.Text()),
        sa.Column("error_message", sa.Text()),
        sa.Column("metadata", sa.Text()),
    ]


def _added_columns() -> list[sa.Column]:
    return [
        sa.Column("updated_at", sa.Text()),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0")),
        sa.Column("worker_id", sa.Text()),
        sa.Column("heartbeat_at", sa.Text()),
        sa.Column("downloaded_bytes", BIGINT, server_default=sa.text("0")),
        sa.Column("speed_bps", BIGINT),
        sa.Column("eta_seconds", sa.Integer()),
        sa.Column("current_file", sa.Text()),
        sa.Column("message", sa.Text()),
        sa.Column("run_after", sa.Text()),
        sa.Column("auto_retries", sa.Integer(), server_default=sa.text("0")),
    ]


def _now(dialect: str) -> str:
    return UTC_NOW.get(dialect, "CURRENT_TIMESTAMP")


def _create_indexes() -> None:
    op.create_index("idx_download_status", TABLE, ["status"], if_not_exists=True)
    op.create_index("idx_download_created", TABLE, ["created_at"], if_not_exists=True)
    op.create_index(
        "idx_download_pending",
        TABLE,
        ["created_at", "id"],
        sqlite_where=PENDING_WHERE,
        postgresql_where=PENDING_WHERE,
        if_not_exists=True,
    )


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    inspector = sa.inspect(bind)
    if not inspector.has_table(TABLE):
        op.create_table(TABLE, *_seed_columns(dialect), *_added_columns())
        _create_indexes()
        return

    existing = {c["name"]: c for c in inspector.get_columns(TABLE)}
    missing_seed = [c.name for c in _seed_columns(dialect) if c.name not in existing]
    if missing_seed:
        raise RuntimeError(
            f"A table named {TABLE} exists but lacks the video manager's columns "
            f"{', '.join(missing_seed)}; dlstore will not adopt it."
        )
    for column in _added_columns():
        if column.name not in existing:
            op.add_column(TABLE, column)
    needs_default = {
        name: default
        for name, default in (("status", "pending"), ("created_at", sa.text(_now(dialect))))
        if existing[name].get("default") is None
    }
    # SQLite's `id TEXT PRIMARY KEY` admits NULL; the model says NOT NULL. Tighten it
    # with the same rebuild, unless a row really has no id (then it stays as it is).
    null_ids = bind.execute(sa.text(f"SELECT COUNT(*) FROM {TABLE} WHERE id IS NULL")).scalar()
    tighten_id = existing["id"].get("nullable", False) and not null_ids
    if needs_default or tighten_id:
        # SQLite can only change a default by rebuilding the table; batch mode copies
        # every row across. PostgreSQL alters in place.
        with op.batch_alter_table(TABLE, recreate="auto") as batch:
            for name, default in needs_default.items():
                batch.alter_column(name, existing_type=sa.Text(), server_default=default)
            if tighten_id:
                batch.alter_column("id", existing_type=sa.Text(), nullable=False)
    _create_indexes()


def downgrade() -> None:
    op.drop_index("idx_download_pending", table_name=TABLE, if_exists=True)
    with op.batch_alter_table(TABLE, recreate="auto") as batch:
        for column in _added_columns():
            batch.drop_column(column.name)
