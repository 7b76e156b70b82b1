"""dlstore.wakeup: the daemon's wait ends on a new row (NOTIFY / data_version), on set(),
or at its timeout; a watcher that cannot work falls back to polling."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from dlstore import db, wakeup
from dlstore.store import TaskStore
from dlstore.testing.rust_api import RustApi


@pytest.fixture
def watcher(migrated_url) -> Iterator[wakeup.Wakeup]:
    engine = db.make_engine(migrated_url)
    watch = wakeup.for_engine(engine)
    yield watch
    watch.close()
    engine.dispose()


def timed(waiter: wakeup.Wakeup, seconds: float, **kwargs: bool) -> tuple[bool, float]:
    started = time.monotonic()
    changed = waiter.wait(seconds, **kwargs)
    return changed, time.monotonic() - started


def later(seconds: float, action, *args) -> threading.Timer:  # type: ignore[no-untyped-def]
    timer = threading.Timer(seconds, action, args)
    timer.start()
    return timer


def settle(watch: wakeup.Wakeup) -> None:
    """Past the first wait, which reports a change (one may have been missed)."""
    assert watch.wait(0.0) is True
    while watch.wait(0.1):
        pass


def test_the_right_watcher_for_each_database(sqlite_url):
    assert type(wakeup.for_engine(db.make_engine(sqlite_url))) is wakeup.SqliteWakeup
    pg = db.make_engine("postgresql://nobody@127.0.0.1:1/none")
    assert type(wakeup.for_engine(pg)) is wakeup.PostgresWakeup
    assert type(wakeup.for_engine(db.make_engine("sqlite://"))) is wakeup.Wakeup


def test_an_insert_by_the_api_ends_the_wait_at_once(watcher, migrated_url):
    settle(watcher)
    assert timed(watcher, 0.3)[0] is False
    api = RustApi(migrated_url)
    try:
        timer = later(0.2, api.create, "New", "https://e/a.m3u8")
        changed, took = timed(watcher, 10.0)
        timer.join()
    finally:
        api.close()
    assert changed is True and took < 2.0


def test_pause_and_resume_end_the_wait(watcher, migrated_url):
    engine = db.make_engine(migrated_url)
    store = TaskStore(engine)
    settle(watcher)
    for paused in (True, False):
        timer = later(0.1, store.set_paused, paused)
        changed, took = timed(watcher, 10.0)
        timer.join()
        assert changed is True and took < 2.0
    engine.dispose()


def test_other_changes_do_not_wake_a_postgres_watcher(watcher, migrated_url):
    """Cancelling a row (status not pending) notifies nothing; SQLite wakes on any commit."""
    store_engine = db.make_engine(migrated_url)
    store = TaskStore(store_engine)
    task = store.create(name="x", url="https://e/x.m3u8")
    settle(watcher)
    timer = later(0.1, store.cancel, task.id)
    changed, _ = timed(watcher, 1.0)
    timer.join()
    assert changed is (not migrated_url.startswith("postgresql"))
    store_engine.dispose()


def test_set_ends_the_wait_and_watch_false_ignores_changes(watcher, migrated_url):
    settle(watcher)
    timer = later(0.1, watcher.set)
    changed, took = timed(watcher, 10.0)
    timer.join()
    assert changed is False and took < 2.0
    api = RustApi(migrated_url)
    api.create("Unseen", "https://e/b.m3u8")
    api.close()
    changed, took = timed(watcher, 0.3, watch=False)
    assert changed is False and took >= 0.25


def test_a_missing_sqlite_file_means_polling(tmp_path, caplog):
    watch = wakeup.SqliteWakeup(str(tmp_path / "gone.sqlite"))
    changed, took = timed(watch, 0.2)
    assert changed is False and 0.15 <= took < 2.0
    assert not (tmp_path / "gone.sqlite").exists()  # never created
    assert "polling instead" in caplog.text
    assert caplog.text.count("polling instead") == 1
    timed(watch, 0.05)
    assert caplog.text.count("polling instead") == 1  # said once


@pytest.mark.postgres
def test_an_unreachable_postgres_means_polling(caplog):
    watch = wakeup.for_engine(db.make_engine("postgresql://nobody@127.0.0.1:1/none"))
    changed, took = timed(watch, 0.2)
    assert changed is False and 0.15 <= took < 5.0
    assert "Cannot LISTEN" in caplog.text


def test_seen_absorbs_changes_before_the_mark_only(watcher, migrated_url):
    api = RustApi(migrated_url)
    try:
        settle(watcher)
        api.create("Before", "https://e/a.m3u8")
        watcher.seen(watcher.mark())  # a look at the table began after that commit
        sqlite = isinstance(watcher, wakeup.SqliteWakeup)
        # SQLite: nothing new since the mark; PostgreSQL: the NOTIFY is still to be read.
        assert timed(watcher, 0.3)[0] is (not sqlite)
        while watcher.wait(0.1):
            pass
        mark = watcher.mark()
        api.create("After", "https://e/b.m3u8")
        watcher.seen(mark)
        changed, took = timed(watcher, 5.0)
        assert changed is True and took < 2.0
    finally:
        api.close()
