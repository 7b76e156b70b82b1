"""Priority (claim order, its index, add/batch) and the queue-wide pause switch."""

from __future__ import annotations

import json
import multiprocessing
import random
from collections import Counter

import pytest
from sqlalchemy import event
from typer.testing import CliRunner

from dlstore.cli import app
from dlstore.store import TaskStore
from dlstore.testing.rust_api import CREATE, RustApi

from .support.race import drain

runner = CliRunner()


def run(*args: str, code: int = 0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


@pytest.fixture
def api(migrated_url):
    client = RustApi(migrated_url)
    yield client
    client.close()


def insert(api: RustApi, task_id: str, minute: int, priority: object = "default") -> None:
    api.execute(
        CREATE, (task_id, task_id, "https://e/x.m3u8", f"2025-01-13T10:{minute:02d}:00Z", None)
    )
    if priority != "default":
        api.execute("UPDATE download_tasks SET priority = ? WHERE id = ?", (priority, task_id))


def drain_ids(store: TaskStore) -> list[str]:
    claimed = []
    while (found := store.claim("host:1:a")) is not None:
        claimed.append(found[0].id)
    return claimed


# --- priority ---------------------------------------------------------------------------


def test_highest_priority_first_then_oldest_and_null_last(store, api):
    insert(api, "old-0", 1)  # the API's INSERT: priority defaults to 0
    insert(api, "urgent-new", 9, 5)
    insert(api, "urgent-old", 2, 5)
    insert(api, "low", 0, -3)
    insert(api, "null", 0, None)  # an explicit NULL: after every number
    insert(api, "new-0", 5)
    insert(api, "top", 8, 1000)
    assert api.status("old-0")["priority"] == 0
    assert drain_ids(store) == ["top", "urgent-old", "urgent-new", "old-0", "new-0", "low", "null"]


def test_store_create_writes_priority(store):
    later = store.create(name="b", url="https://e/b.m3u8", priority=2)
    store.create(name="a", url="https://e/a.m3u8")
    assert store.get(later.id).priority == 2
    assert drain_ids(store)[0] == later.id


def _claim_sql(store: TaskStore) -> tuple[str, object]:
    """The claim statement exactly as the store sends it, with its parameters."""
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE"):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        store.claim("host:1:a")
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    (found,) = seen
    return found


def test_claim_reads_the_pending_index_in_order(store, api):
    for n in range(50):
        insert(api, f"r{n:02d}", n % 60, n % 3)
    statement, parameters = _claim_sql(store)
    with store.engine.connect() as conn:
        if api.sqlite:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            plan = " | ".join(r[3] for r in rows)
            assert "USING INDEX idx_download_pending" in plan, plan
        else:
            conn.exec_driver_sql("SET enable_seqscan = off")
            rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
            plan = " | ".join(r[0] for r in rows)
            assert "idx_download_pending" in plan, plan
        conn.rollback()
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


def test_priority_order_holds_under_a_race_of_claimers(store, api, migrated_url):
    rows = 90
    rng = random.Random(11)
    for n in range(rows):
        insert(api, f"row-{n:03d}", n % 60, rng.choice([-1, 0, 0, 3, 7]))
    key = {r["id"]: (-r["priority"], r["created_at"], r["id"]) for r in api.list()}

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=drain, args=(migrated_url, f"w{n}", results)) for n in range(3)]
    for p in procs:
        p.start()
    reports = dict(results.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0

    claimed = Counter(task_id for found in reports.values() for task_id, _ in found)
    assert set(claimed) == set(key) and set(claimed.values()) == {1}
    for found in reports.values():  # each claimer took rows in the claim order
        order = [key[task_id] for task_id, _ in found]
        assert order == sorted(order)


def test_add_priority_flag(migrated_url):
    db = ["--db", migrated_url]
    low = run("add", "https://e/a.m3u8", "--name", "Low", *db).stdout.strip()
    high = run("add", "https://e/b.m3u8", "--name", "High", "--priority", "10", *db).stdout
    high = high.strip()
    assert json.loads(run("status", high, "--json", *db).stdout)["priority"] == 10
    assert "priority   10" in run("status", high, *db).stdout
    assert json.loads(run("status", low, "--json", *db).stdout)["priority"] == 0
    assert (
        "1001" in run("add", "https://e/c", "--name", "C", "--priority", "1001", *db, code=1).stderr
    )
    bad = run("add", "https://e/c", "--name", "C", "--priority", "high", *db, code=2)
    assert "priority" in bad.stderr


@pytest.mark.parametrize(
    ("priority", "ok"),
    [(5, True), (-1000, True), (None, True), (1001, False), ("5", False), (2.5, False),
     (True, False)],
)  # fmt: skip
def test_batch_priority(tmp_path, migrated_url, priority, ok):
    entries = [
        {"name": "first", "url": "https://e/1.m3u8"},
        {"name": "second", "url": "https://e/2.m3u8", "priority": priority},
    ]
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps(entries))
    result = run("batch", str(tasks), "--enqueue", "--db", migrated_url, code=0 if ok else 1)
    if not ok:
        assert "priority must be a whole number from -1000 to 1000" in result.stderr
        return
    ids = [line.split("\t")[0] for line in result.stdout.strip().splitlines()]
    api = RustApi(migrated_url)
    assert [api.status(i)["priority"] for i in ids] == [0, priority or 0]
    api.close()


# --- pause ------------------------------------------------------------------------------


def test_is_paused_and_set_paused(store):
    assert store.is_paused() is False  # no row yet: running
    state = store.set_paused(True, "disk full")
    assert state.paused and state.reason == "disk full" and state.since
    again = store.set_paused(True)  # idempotent: same since, reason kept
    assert again == state and store.is_paused() is True
    resumed = store.set_paused(False)
    assert not resumed.paused and resumed.reason is None and store.is_paused() is False
    assert store.set_paused(False) == resumed == store.queue_state()


def test_pause_resume_commands_and_the_paused_header(store, api, migrated_url):
    db = ["--db", migrated_url]
    task_id = api.create("Clip", "https://e/a.m3u8")
    assert "paused" not in run("list", *db).stdout.lower()
    first = run("pause", "--reason", "maintenance", *db).stdout
    assert first.startswith("Queue paused since") and "(maintenance)" in first
    assert run("pause", *db).stdout == first  # idempotent
    assert store.is_paused()
    header = run("list", *db).stdout.splitlines()[0]
    assert header.startswith("Queue paused") and "dlstore resume" in header
    assert run("status", task_id, *db).stdout.startswith("Queue paused")
    assert run("list", "--status", "failed", *db).stdout.startswith("Queue paused")
    json.loads(run("list", "--json", *db).stdout)  # JSON stays plain JSON
    json.loads(run("status", task_id, "--json", *db).stdout)
    assert run("resume", *db).stdout.startswith("Queue running")
    assert run("resume", *db).stdout.startswith("Queue running")
    assert not store.is_paused()
    assert "paused" not in run("status", task_id, *db).stdout.lower()


def test_pause_needs_a_migrated_database(db_url):
    for command in ("pause", "resume"):
        assert "dlstore db upgrade" in run(command, "--db", db_url, code=1).stderr


def test_claim_takes_nothing_while_paused(store, api):
    insert(api, "waiting", 1)
    store.set_paused(True, "maintenance")
    assert store.claim("host:1:a") is None
    assert api.status("waiting")["status"] == "pending"
    store.set_paused(False)
    found = store.claim("host:1:a")
    assert found is not None and found[0].id == "waiting"
