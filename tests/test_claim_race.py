"""Four processes drain the queue while the Rust API keeps using the database."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter

from dlstore.store import TaskStore
from dlstore.testing.rust_api import CREATE, RustApi

from .support.race import drain

ROWS = 200
CLAIMERS = 4


def test_each_row_claimed_exactly_once_oldest_first_and_api_never_locked(
    store: TaskStore, migrated_url
):
    api = RustApi(migrated_url)
    for i in range(ROWS):
        api.execute(
            CREATE,
            (
                f"row-{i:03d}",
                f"video {i}",
                f"https://e/{i}.m3u8",
                f"2025-01-13T10:{i // 60:02d}:{i % 60:02d}Z",
                None,
            ),
        )

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=drain, args=(migrated_url, f"w{n}", results)) for n in range(CLAIMERS)
    ]
    stop = threading.Event()
    api_errors: list[str] = []
    api_statements = Counter()
    inserted: list[str] = []

    def rust_api() -> None:
        other = RustApi(migrated_url)
        n = 0
        while not stop.is_set():
            try:
                inserted.append(other.create(f"api {n}", "https://e/api.m3u8"))
                other.list()
                other.status(f"row-{n % ROWS:03d}")
                other.cancel("no-such-id")
                other.retry("no-such-id")
                api_statements["ok"] += 5
            except Exception as exc:  # noqa: BLE001 - the test counts every failure
                api_errors.append(repr(exc))
            n += 1
        other.close()

    api_thread = threading.Thread(target=rust_api)
    for p in procs:
        p.start()
    api_thread.start()
    reports = dict(results.get(timeout=240) for _ in procs)
    stop.set()
    api_thread.join(timeout=30)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0

    assert api_errors == []
    assert api_statements["ok"] >= 50
    claimed = Counter(task_id for rows in reports.values() for task_id, _ in rows)
    assert all(count == 1 for count in claimed.values()), claimed.most_common(3)
    seeded = {f"row-{i:03d}" for i in range(ROWS)}
    assert seeded <= set(claimed)
    # Rows the API inserted are claimed too, unless inserted after the claimers stopped.
    assert set(claimed) - seeded <= set(inserted)
    for rows in reports.values():
        seeded_order = [created for task_id, created in rows if task_id in seeded]
        assert seeded_order == sorted(seeded_order)
    assert sum(1 for rows in reports.values() if rows) >= 2  # the claimers really raced
    statuses = Counter(r["status"] for r in api.list() if r["id"] in claimed)
    assert statuses == {"completed": len(claimed)}
    api.close()
