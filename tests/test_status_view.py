"""The download_status view through the Rust API's own statement, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from dlstore.sizes import format_rate
from dlstore.store import ProgressUpdate, TaskStore
from dlstore.testing.rust_api import STATUS_VIEW, RustApi

VIEW_COLUMNS = [
    "task_id", "status", "progress", "downloaded_segments", "total_segments", "current_file",
    "speed", "eta", "message", "name", "url", "created_at", "started_at", "completed_at",
    "error_message", "output_path",
]  # fmt: skip

SPEEDS = [
    (0, "0 B/s"),
    (999, "999 B/s"),
    (1_000, "1.0 KB/s"),
    (1_049, "1.0 KB/s"),
    (1_050, "1.1 KB/s"),  # half up, in integer arithmetic: the same on both databases
    (512_345, "512.3 KB/s"),
    (999_949, "999.9 KB/s"),
    (999_950, "1.0 MB/s"),  # never "1000.0 KB/s"
    (5_200_000, "5.2 MB/s"),
    (5_249_999, "5.2 MB/s"),
    (5_250_000, "5.3 MB/s"),
    (999_949_999, "999.9 MB/s"),
    (999_950_000, "1.0 GB/s"),
    (12_345_678_901, "12.3 GB/s"),
    (2**63 - 1, "9223372036.9 GB/s"),  # the largest BIGINT: no overflow
    (-1, None),  # nonsense the API may write: unknown
    (None, None),
]
ETAS = [
    (0, "00:00:00"),
    (59, "00:00:59"),
    (135, "00:02:15"),
    (3_600, "01:00:00"),
    (86_399, "23:59:59"),
    (90_061, "25:01:01"),
    (359_999, "99:59:59"),
    (360_000, "99:59:59"),  # capped: two-digit hours
    (2**31 - 1, "99:59:59"),
    (-5, None),
    (None, None),
]


@pytest.fixture
def api(migrated_url):
    client = RustApi(migrated_url)
    yield client
    client.close()


def downloading(store: TaskStore, speed_bps: int | None = 5_200_000, eta: int | None = 135):
    task = store.create(name="Clip", url="https://e/a.m3u8")
    found = store.claim("host:1:a")
    assert found is not None
    update = ProgressUpdate(
        progress=40,
        downloaded_segments=4,
        total_segments=10,
        downloaded_bytes=4_000_000,
        speed_bps=speed_bps,
        eta_seconds=eta,
        current_file="seg-00004.ts",
        message="Downloading",
    )
    assert store.report_progress(found[1], update)
    return task.id, found[1]


def set_columns(api: RustApi, task_id: str, **values) -> None:
    assignments = ", ".join(f"{name} = ?" for name in values)
    api.execute(
        f"UPDATE download_tasks SET {assignments} WHERE id = ?", (*values.values(), task_id)
    )


def test_downloading_row_has_the_seeds_fields_and_formats(store, api):
    task_id, _ = downloading(store)
    row = api.status_view(task_id)
    assert list(row) == VIEW_COLUMNS
    assert row == {
        **row,
        "task_id": task_id,
        "status": "downloading",
        "progress": 40,
        "downloaded_segments": 4,
        "total_segments": 10,
        "current_file": "seg-00004.ts",
        "speed": "5.2 MB/s",
        "eta": "00:02:15",
        "message": "Downloading",
        "name": "Clip",
        "url": "https://e/a.m3u8",
        "completed_at": None,
        "error_message": None,
        "output_path": None,
    }
    plain = api.status(task_id)
    for column in ("created_at", "started_at"):
        assert row[column] == plain[column]


def test_pending_and_completed_rows_have_no_speed_or_eta(store, api):
    done_id, claim = downloading(store)
    waiting = api.create("Waiting", "https://e/w.m3u8")
    set_columns(api, waiting, speed_bps=1000, eta_seconds=10)  # stale values stay hidden
    assert store.complete(claim, output_path="/out/Clip.mp4", learned={}, total_segments=10)
    pending, completed = api.status_view(waiting), api.status_view(done_id)
    assert (pending["status"], pending["speed"], pending["eta"]) == ("pending", None, None)
    assert completed["status"] == "completed" and completed["eta"] is None
    assert completed["speed"] is None and completed["progress"] == 100
    assert completed["output_path"] == "/out/Clip.mp4" and completed["completed_at"]


def test_one_row_per_task_and_none_for_an_unknown_id(store, api):
    ids = {api.create(f"v{n}", "https://e/v.m3u8") for n in range(3)}
    assert {r["task_id"] for r in api.execute("SELECT * FROM download_status").fetchall()} == ids
    assert api.status_view("no-such-id") is None


@pytest.mark.parametrize(("speed_bps", "shown"), SPEEDS)
def test_speed_units(store, api, speed_bps, shown):
    task_id, _ = downloading(store)
    set_columns(api, task_id, speed_bps=speed_bps)
    assert api.status_view(task_id)["speed"] == shown


@pytest.mark.parametrize(("eta_seconds", "shown"), ETAS)
def test_eta_format(store, api, eta_seconds, shown):
    task_id, _ = downloading(store)
    set_columns(api, task_id, eta_seconds=eta_seconds)
    assert api.status_view(task_id)["eta"] == shown


def test_values_of_the_wrong_type_read_as_unknown(store, api):
    """SQLite keeps whatever the API writes; the view never fails on it."""
    task_id, _ = downloading(store)
    if api.sqlite:
        set_columns(api, task_id, speed_bps="fast", eta_seconds="soon")
        assert (api.status_view(task_id)["speed"], api.status_view(task_id)["eta"]) == (None, None)
        set_columns(api, task_id, speed_bps=5.2e6, eta_seconds=135.7)
        row = api.status_view(task_id)
        assert (row["speed"], row["eta"]) == ("5.2 MB/s", "00:02:15")
    set_columns(api, task_id, status="paused")  # a status dlstore does not know
    assert api.status_view(task_id)["speed"] is None


def test_lookup_by_task_id_uses_the_primary_key(store, api):
    downloading(store)
    if api.sqlite:
        plan = " ".join(r[3] for r in api.execute("EXPLAIN QUERY PLAN " + STATUS_VIEW, ("x",)))
        assert "USING INDEX" in plan or "USING PRIMARY KEY" in plan, plan
        assert "SCAN" not in plan, plan
    else:
        api.execute("SET enable_seqscan = off")
        plan = " ".join(r["QUERY PLAN"] for r in api.execute("EXPLAIN " + STATUS_VIEW, ("x",)))
        assert "download_tasks_pkey" in plan, plan


@pytest.mark.parametrize(("speed_bps", "text"), [(s, t) for s, t in SPEEDS if t is not None])
def test_python_writes_a_rate_as_the_view_does(speed_bps, text):
    assert format_rate(speed_bps) == text  # the CLI's speeds, sniff's and progress's sizes
