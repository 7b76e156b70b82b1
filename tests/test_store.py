"""Each transition of the task store and its guard, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import inspect, text

from dlstore.errors import InvalidTransitionError, TaskNotFoundError
from dlstore.models import DownloadTask, download_tasks
from dlstore.options import merge_metadata
from dlstore.store import ProgressUpdate, TaskStore
from dlstore.timeutil import parse_ts, ts_after

from .support.db import age_heartbeats


def progress(n: int = 1) -> ProgressUpdate:
    return ProgressUpdate(
        progress=n * 10,
        downloaded_segments=n,
        total_segments=10,
        downloaded_bytes=n * 1000,
        speed_bps=500,
        eta_seconds=9 - n,
        current_file=f"seg-{n:03d}.ts",
        message="Downloading",
    )


def claim_one(store: TaskStore, worker: str = "host:1:a"):
    found = store.claim(worker)
    assert found is not None
    return found


def test_create_and_get(store):
    task = store.create(name="Clip", url="https://e.com/a.m3u8", metadata={"quality": "720p"})
    got = store.get(task.id)
    assert got.status == "pending"
    assert got.metadata_dict() == {"quality": "720p"}
    assert parse_ts(got.created_at) is not None
    assert got.attempts == 0 and got.progress == 0


def test_get_unknown_raises(store):
    with pytest.raises(TaskNotFoundError, match="nope"):
        store.get("nope")


def test_claim_takes_oldest_first_and_sets_fields(store):
    first = store.create(name="a", url="https://e/1.m3u8")
    store.create(name="b", url="https://e/2.m3u8")
    task, claim = claim_one(store)
    assert task.id == first.id
    assert task.status == "downloading"
    assert task.worker_id == "host:1:a" and claim.attempt == 1 == task.attempts
    assert task.started_at and task.heartbeat_at and task.updated_at
    assert store.get(first.id).status == "downloading"


def test_claim_none_when_empty(store):
    assert store.claim("w") is None


def test_claim_skips_rows_not_yet_due(store):
    later = store.create(name="later", url="https://e/1.m3u8")
    task, claim = claim_one(store)
    assert store.requeue(claim, "Server error 503", run_after=ts_after(3600))
    assert store.get(later.id).status == "pending"
    assert store.claim("w") is None
    assert store.next_due() == store.get(later.id).run_after


def test_progress_write_and_fence(store):
    store.create(name="a", url="https://e/1.m3u8")
    task, claim = claim_one(store)
    assert store.report_progress(claim, progress(3))
    row = store.get(task.id)
    assert (row.progress, row.downloaded_segments, row.total_segments) == (30, 3, 10)
    assert (row.downloaded_bytes, row.speed_bps, row.current_file) == (3000, 500, "seg-003.ts")
    store.cancel(task.id)
    assert not store.report_progress(claim, progress(4))
    assert not store.complete(claim, output_path="/x.mp4", learned={"duration": 1.0})
    assert not store.fail(claim, "boom")
    assert not store.requeue(claim, "boom", run_after=ts_after(1))
    assert not store.release(claim)
    row = store.get(task.id)
    assert row.status == "cancelled" and row.progress == 30 and row.output_path is None


def test_complete_merges_metadata_keeping_callers_keys(store):
    store.create(name="a", url="https://e/1.m3u8", metadata={"quality": "720p", "custom": 1})
    task, claim = claim_one(store)
    store.report_progress(claim, progress(9))
    learned = {"quality": "1080p", "duration": 12.5, "width": 1280, "variant": {"height": 720}}
    assert store.complete(claim, output_path="/out/a.mp4", learned=learned)
    row = store.get(task.id)
    assert row.status == "completed" and row.progress == 100
    assert row.downloaded_segments == row.total_segments == 10
    assert row.completed_at and row.output_path == "/out/a.mp4" and row.error_message is None
    assert row.metadata_dict() == {
        "quality": "720p",
        "custom": 1,
        "duration": 12.5,
        "width": 1280,
        "variant": {"height": 720},
    }


def test_fail_records_reason(store):
    store.create(name="a", url="https://e/1.m3u8")
    task, claim = claim_one(store)
    assert store.fail(claim, "The playlist URL returned 404 Not Found.")
    row = store.get(task.id)
    assert row.status == "failed"
    assert row.error_message == "The playlist URL returned 404 Not Found."


def test_retry_only_from_failed_or_cancelled(store):
    task = store.create(name="a", url="https://e/1.m3u8")
    with pytest.raises(InvalidTransitionError, match="pending"):
        store.retry(task.id)
    _, claim = claim_one(store)
    with pytest.raises(InvalidTransitionError, match="downloading"):
        store.retry(task.id)
    store.report_progress(claim, progress(5))
    store.fail(claim, "boom")
    row = store.retry(task.id)
    assert row.status == "pending" and row.error_message is None
    assert row.progress == 50 and row.downloaded_segments == 5  # kept for resume
    _, claim2 = claim_one(store)
    assert claim2.attempt == 2
    store.complete(claim2, output_path="/o.mp4", learned={})
    with pytest.raises(InvalidTransitionError, match="completed"):
        store.retry(task.id)
    with pytest.raises(TaskNotFoundError):
        store.retry("missing")


def test_cancel_only_from_pending_or_downloading(store):
    task = store.create(name="a", url="https://e/1.m3u8")
    assert store.cancel(task.id).status == "cancelled"
    with pytest.raises(InvalidTransitionError, match="cancelled"):
        store.cancel(task.id)
    with pytest.raises(TaskNotFoundError):
        store.cancel("missing")
    other = store.create(name="b", url="https://e/2.m3u8")
    claim_one(store)
    assert store.cancel(other.id).status == "cancelled"


def test_reclaim_only_after_lease_and_fences_old_holder(store):
    task = store.create(name="a", url="https://e/1.m3u8")
    _, old = claim_one(store, "host:1:old")
    assert store.reclaim_expired(30) == []
    assert store.get(task.id).status == "downloading"
    age_heartbeats(store, 31)
    assert store.reclaim_expired(30) == [task.id]
    row = store.get(task.id)
    assert row.status == "pending" and row.worker_id is None
    _, new = claim_one(store, "host:2:new")
    assert new.attempt == 2
    assert not store.report_progress(old, progress(1))
    assert not store.complete(old, output_path="/x", learned={})
    assert store.report_progress(new, progress(2))


def test_same_worker_reclaiming_is_fenced_by_attempt(store):
    task = store.create(name="a", url="https://e/1.m3u8")
    _, old = claim_one(store, "host:1:same")
    age_heartbeats(store, 1)
    store.reclaim_expired(0)
    _, new = claim_one(store, "host:1:same")
    assert old.worker_id == new.worker_id and old.attempt != new.attempt
    assert not store.heartbeat(old)
    assert store.heartbeat(new)
    assert store.get(task.id).status == "downloading"


def test_release_keeps_progress_and_uncounts_attempt(store):
    task = store.create(name="a", url="https://e/1.m3u8")
    _, claim = claim_one(store)
    store.report_progress(claim, progress(4))
    assert store.release(claim)
    row = store.get(task.id)
    assert row.status == "pending" and row.attempts == 0 and row.progress == 40
    assert row.worker_id is None


def test_requeue_counts_automatic_retries_and_fail_resets(store):
    task = store.create(name="a", url="https://e/1.m3u8")
    _, claim = claim_one(store)
    assert store.requeue(claim, "Server error 503", run_after=ts_after(-1))
    row = store.get(task.id)
    assert row.status == "pending" and row.auto_retries == 1 and "503" in row.message
    _, claim = claim_one(store)
    assert store.fail(claim, "gave up")
    assert store.get(task.id).auto_retries == 0


def test_held_by_and_reclaim_dead_holder(store):
    task = store.create(name="a", url="https://e/1.m3u8")
    claim_one(store, "hostA:123:x")
    store.create(name="b", url="https://e/2.m3u8")
    claim_one(store, "hostB:5:y")
    held = store.held_by("hostA:")
    assert [t.id for t in held] == [task.id]
    assert store.reclaim(held[0], "Its daemon (pid 123) died; waiting to resume")
    assert store.get(task.id).status == "pending"
    assert not store.reclaim(held[0], "again")  # the row moved on: fence fails


def test_fail_unclaimed_never_touches_cancelled(store):
    task = store.create(name="a", url="https://e/1.m3u8")
    store.cancel(task.id)
    assert not store.fail_unclaimed(task.id, "bad", from_status="cancelled")
    assert not store.fail_unclaimed(task.id, "bad", from_status="pending")
    assert store.get(task.id).status == "cancelled"


def test_complete_leaves_non_json_metadata_alone(store, migrated_url):
    task = store.create(name="a", url="https://e/1.m3u8")
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE download_tasks SET metadata = 'not json' WHERE id = :id"), {"id": task.id}
        )
    _, claim = claim_one(store)
    assert store.complete(claim, output_path="/o", learned={"duration": 1})
    assert store.get(task.id).meta == "not json"


def test_list_and_counts(store):
    a = store.create(name="a", url="https://e/1.m3u8")
    b = store.create(name="b", url="https://e/2.m3u8")
    store.cancel(a.id)
    assert [t.id for t in store.list()] == [b.id, a.id]
    assert [t.id for t in store.list(status="cancelled")] == [a.id]
    assert store.counts() == {"pending": 1, "cancelled": 1}
    assert json.loads(json.dumps(b.to_json()))["metadata"] is None


def test_merge_metadata_is_pure():
    existing = {"quality": "best", "headers": {"Referer": "x"}}
    merged = merge_metadata(existing, {"quality": "720p", "width": 1})
    assert merged == {"quality": "best", "headers": {"Referer": "x"}, "width": 1}
    assert existing == {"quality": "best", "headers": {"Referer": "x"}}


def test_the_model_has_one_attribute_per_column():
    columns = {prop.key: prop.columns[0].name for prop in inspect(DownloadTask).column_attrs}
    assert set(DownloadTask.model_fields) == set(columns)  # no attribute without a column
    assert sorted(columns.values()) == sorted(c.name for c in download_tasks.columns)
    assert columns["meta"] == "metadata"


def test_a_read_row_is_keyed_by_column_name(store):
    task = store.create(name="a", url="https://e/1.m3u8", metadata={"quality": "720p"})
    shown = store.get(task.id).to_json()
    assert list(shown) == [c.name for c in download_tasks.columns]
    assert shown["metadata"] == {"quality": "720p"} and "meta" not in shown
