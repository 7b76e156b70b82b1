"""Alembic environment for dlstore: only dlstore's own objects, ever.

The database is shared with the Rust app, so autogenerate and every migration
see dlstore's objects alone (``include_name``/``include_object``), and Alembic
keeps its revision in ``dlstore_alembic_version``, never ``alembic_version``.
SQLite runs in batch mode and is put in WAL mode.
"""

from __future__ import annotations

from alembic import context
from dlstore import db
from dlstore.migrate import include_name, include_object
from dlstore.models import SQLModel

config = context.config
target_metadata = SQLModel.metadata


def _configure(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=db.VERSION_TABLE,
        include_name=include_name,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _database_url() -> str:
    url = config.attributes.get("dlstore_url") or context.get_x_argument(as_dictionary=True).get(
        "db"
    )
    if url:
        return url
    from dlstore.config import load_settings

    return load_settings().resolved_database_url()


def run_migrations_offline() -> None:
    context.configure(
        url=db.normalize_url(_database_url()),
        target_metadata=target_metadata,
        version_table=db.VERSION_TABLE,
        include_name=include_name,
        include_object=include_object,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = db.make_engine(_database_url())
    try:
        db.enable_wal(engine)
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
