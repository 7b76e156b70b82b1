"""``history``: one entry per transition, written by the transition's own statement."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dlstore.cli import app
from dlstore.models import HISTORY_LIMIT
from dlstore.options import MAX_METADATA_DEPTH
from dlstore.store import TaskStore
from dlstore.testing.rust_api import RustApi
from dlstore.timeutil import parse_ts, ts_after

from .support.db import age_heartbeats

runner = CliRunner()


@pytest.fixture
def api(migrated_url):
    client = RustApi(migrated_url)
    yield client
    client.close()


def history(store: TaskStore, task_id: str) -> list[dict]:
    entries = store.get(task_id).history_entries()
    assert entries is not None
    return entries


def events(store: TaskStore, task_id: str) -> list[str]:
    return [e["event"] for e in history(store, task_id)]


def claim(store: TaskStore, worker: str = "host:1:a"):
    found = store.claim(worker)
    assert found is not None
    return found


def test_claim_requeue_claim_complete(store):
    task_id = store.create(name="a", url="https://e/a.m3u8").id
    assert store.get(task_id).history is None  # nothing happened yet
    _, first = claim(store, "host:1:a")
    assert store.requeue(first, "Server error 503", run_after=ts_after(-1))
    _, second = claim(store, "host:2:b")
    assert store.complete(second, output_path="/out/a.mp4", learned={})

    entries = history(store, task_id)
    assert [(e["event"], e["attempt"], e["worker"]) for e in entries] == [
        ("claimed", 1, "host:1:a"),
        ("requeued", 1, "host:1:a"),
        ("claimed", 2, "host:2:b"),
        ("completed", 2, "host:2:b"),
    ]
    assert "Server error 503" in entries[1]["message"]
    assert entries[3]["message"] == "Saved /out/a.mp4"
    assert all(set(e) == {"at", "event", "attempt", "worker", "message"} for e in entries)
    times = [parse_ts(e["at"]) for e in entries]
    assert times == sorted(times)
    assert entries[-1]["at"] == store.get(task_id).updated_at  # the same statement


def test_fail_release_and_both_reclaims(store):
    failed = store.create(name="f", url="https://e/f.m3u8").id
    _, c = claim(store)
    assert store.fail(c, "The server answered 404 Not Found.")
    released = store.create(name="r", url="https://e/r.m3u8").id
    _, c = claim(store)
    assert store.release(c)
    _, c = claim(store, "host:9:dead")
    age_heartbeats(store, 60)
    expired = store.reclaim_expired(30)
    assert expired == [released]
    _, c = claim(store, "host:9:gone")
    assert store.reclaim(store.get(released), "Its daemon (pid 9) is gone; waiting to resume")

    assert events(store, failed) == ["claimed", "failed"]
    assert history(store, failed)[-1]["message"] == "The server answered 404 Not Found."
    entries = history(store, released)
    assert [(e["event"], e["attempt"]) for e in entries] == [
        ("claimed", 1),
        ("released", 1),  # the attempt that ended, though release does not count it
        ("claimed", 1),
        ("reclaimed", 1),
        ("claimed", 2),
        ("reclaimed", 2),
    ]
    assert [e["worker"] for e in entries[2:]] == ["host:9:dead"] * 2 + ["host:9:gone"] * 2


def test_one_statement_for_many_rows_gives_each_its_own_entry(store):
    ids = [store.create(name=f"v{n}", url="https://e/v.m3u8").id for n in range(3)]
    for n in range(3):
        claim(store, f"host:{n}:w")
    age_heartbeats(store, 60)
    assert sorted(store.reclaim_expired(30)) == sorted(ids)
    for n, task_id in enumerate(ids):
        assert [(e["event"], e["worker"]) for e in history(store, task_id)] == [
            ("claimed", f"host:{n}:w"),
            ("reclaimed", f"host:{n}:w"),
        ]


def test_dlstore_cancel_and_retry_append(store):
    task_id = store.create(name="a", url="https://e/a.m3u8").id
    _, c = claim(store)
    store.cancel(task_id)
    store.retry(task_id)
    store.cancel(task_id)  # pending this time: no worker holds it
    entries = history(store, task_id)
    assert [(e["event"], e["worker"]) for e in entries] == [
        ("claimed", "host:1:a"),
        ("cancelled", "host:1:a"),
        ("retried", None),
        ("cancelled", None),
    ]
    assert not store.heartbeat(c)


def test_the_apis_own_cancel_and_retry_do_not_append(store, api):
    """The API's statements cannot write history (CONTRACT.md §2 is unchanged): the
    entries dlstore's later transitions add still follow on."""
    task_id = api.create("a", "https://e/a.m3u8")
    _, c = claim(store)
    assert api.cancel(task_id) == 1
    assert not store.complete(c, output_path="/out/a.mp4", learned={})  # fenced: no entry
    assert events(store, task_id) == ["claimed"]
    assert api.retry(task_id) == 1
    claim(store, "host:2:b")
    assert events(store, task_id) == ["claimed", "claimed"]
    assert [e["attempt"] for e in history(store, task_id)] == [1, 2]


def test_capped_at_the_last_entries(store):
    task_id = store.create(name="a", url="https://e/a.m3u8").id
    for _ in range(HISTORY_LIMIT // 2 + 5):
        store.cancel(task_id)
        store.retry(task_id)
    entries = history(store, task_id)
    assert len(entries) == HISTORY_LIMIT
    assert [e["event"] for e in entries[-2:]] == ["cancelled", "retried"]
    assert entries[0]["event"] == "cancelled"  # the oldest ten are gone, in pairs
    assert [parse_ts(e["at"]) for e in entries] == sorted(parse_ts(e["at"]) for e in entries)


@pytest.mark.parametrize(
    "written", ["not json", "", "{", '{"a": 1}', "42", '"text"', "null", "[1, 2"]
)
def test_a_history_that_is_not_an_array_starts_afresh(store, api, written):
    task_id = api.create("a", "https://e/a.m3u8")
    api.execute("UPDATE download_tasks SET history = ? WHERE id = ?", (written, task_id))
    found = store.claim("host:1:a")
    assert found is not None and found[0].id == task_id
    assert events(store, task_id) == ["claimed"]


def test_an_array_the_api_wrote_is_kept_and_cut(store, api):
    task_id = api.create("a", "https://e/a.m3u8")
    foreign = [True, False, None, "text", 1.5, {"nested": [1, {"x": True}]}]
    api.execute(
        "UPDATE download_tasks SET history = ? WHERE id = ?", (json.dumps(foreign), task_id)
    )
    claim(store)
    entries = history(store, task_id)
    assert entries[:-1] == foreign and entries[-1]["event"] == "claimed"
    long = [{"event": "old", "n": n} for n in range(3 * HISTORY_LIMIT)]
    api.execute("UPDATE download_tasks SET history = ? WHERE id = ?", (json.dumps(long), task_id))
    store.cancel(task_id)
    entries = history(store, task_id)
    assert len(entries) == HISTORY_LIMIT
    assert entries[:-1] == long[-(HISTORY_LIMIT - 1) :] and entries[-1]["event"] == "cancelled"


def test_long_messages_are_cut(store):
    task_id = store.create(name="a", url="https://e/a.m3u8").id
    _, c = claim(store)
    assert store.fail(c, "x" * 5000)
    assert store.get(task_id).error_message == "x" * 5000
    assert 0 < len(history(store, task_id)[-1]["message"]) <= 500


def test_status_shows_history_and_json_parses_it(store, migrated_url):
    task_id = store.create(name="a", url="https://e/a.m3u8").id
    _, c = claim(store)
    assert store.requeue(c, "Connection reset", run_after=ts_after(-1))
    claim(store, "host:2:b")

    shown = runner.invoke(app, ["status", task_id, "--db", migrated_url])
    assert shown.exit_code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("history"))
    assert "claimed" in lines[start] and "host:1:a" in lines[start]
    assert "requeued" in lines[start + 1] and "Connection reset" in lines[start + 1]
    assert "claimed" in lines[start + 2] and "attempt 2" in lines[start + 2]

    as_json = runner.invoke(app, ["status", task_id, "--json", "--db", migrated_url])
    parsed = json.loads(as_json.stdout)["history"]
    assert [e["event"] for e in parsed] == ["claimed", "requeued", "claimed"]


def test_status_shows_the_last_few_and_json_keeps_foreign_text(store, api, migrated_url):
    task_id = api.create("a", "https://e/a.m3u8")
    for _ in range(5):
        store.cancel(task_id)
        store.retry(task_id)
    shown = runner.invoke(app, ["status", task_id, "--db", migrated_url]).stdout
    assert "(5 earlier)" in shown and shown.count("retried") == 3
    api.execute("UPDATE download_tasks SET history = 'garbage' WHERE id = ?", (task_id,))
    as_json = runner.invoke(app, ["status", task_id, "--json", "--db", migrated_url])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["history"] == "garbage"


@pytest.mark.parametrize("depth", [MAX_METADATA_DEPTH + 1, 100_000])
def test_a_history_nested_without_bound_is_shown_as_the_text_it_is(store, api, migrated_url, depth):
    """Read within metadata's bounds: nesting past them, or past what the JSON parser's
    recursion survives, is not a history (once a RecursionError crashed `status`)."""
    task_id = api.create("a", "https://e/a.m3u8")
    deep = "[" * depth + "]" * depth
    api.execute("UPDATE download_tasks SET history = ? WHERE id = ?", (deep, task_id))
    assert store.get(task_id).history_entries() is None
    shown = runner.invoke(app, ["status", task_id, "--db", migrated_url])
    assert shown.exit_code == 0, shown.output
    assert "history" not in shown.stdout
    as_json = runner.invoke(app, ["status", task_id, "--json", "--db", migrated_url])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["history"] == deep
    listed = runner.invoke(app, ["list", "--json", "--db", migrated_url])
    assert listed.exit_code == 0 and json.loads(listed.stdout)[0]["history"] == deep
