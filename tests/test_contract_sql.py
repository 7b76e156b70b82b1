"""The Rust API's SQL (CONTRACT.md §2), verbatim, against the migrated schema."""

from __future__ import annotations

import json

from dlstore.store import TaskStore
from dlstore.testing.rust_api import CREATE, RustApi
from dlstore.timeutil import parse_ts


def test_api_statements_verbatim(store: TaskStore, migrated_url):
    api = RustApi(migrated_url)
    task_id = api.create("Clip", "https://e/a.m3u8", {"quality": "720p"})
    row = api.status(task_id)
    assert row["status"] == "pending" and json.loads(row["metadata"]) == {"quality": "720p"}
    assert row["progress"] == 0 and row["downloaded_segments"] == 0 and row["attempts"] == 0
    assert [r["id"] for r in api.list()] == [task_id]
    assert store.get(task_id).name == "Clip"  # dlstore reads what the API wrote

    assert api.retry(task_id) == 0  # pending: not retryable
    assert api.cancel(task_id) == 1
    assert api.status(task_id)["status"] == "cancelled"
    assert api.cancel(task_id) == 0
    assert api.retry(task_id) == 1
    assert api.status(task_id)["status"] == "pending"
    found = store.claim("w")
    assert found is not None and found[0].id == task_id
    assert api.cancel(task_id) == 1  # cancel while downloading
    assert not store.heartbeat(found[1])
    api.close()


def test_minimal_insert_is_a_valid_task(store: TaskStore, migrated_url):
    api = RustApi(migrated_url)
    api.execute(
        "INSERT INTO download_tasks (id, name, url) VALUES (?, ?, ?)", ("m1", "n", "https://e/x")
    )
    row = api.status("m1")
    assert row["status"] == "pending"
    assert parse_ts(row["created_at"]) is not None and row["created_at"].endswith("Z")
    task, _ = store.claim("w")
    assert task.id == "m1"
    api.close()


def test_api_timestamps_in_other_rfc3339_forms_are_read(store: TaskStore, migrated_url):
    api = RustApi(migrated_url)
    api.execute(CREATE, ("t1", "n", "https://e/x", "2025-01-13T12:00:00.123456789+02:00", None))
    created = store.get("t1").created()
    assert created is not None and created.isoformat() == "2025-01-13T10:00:00.123456+00:00"
    api.close()
