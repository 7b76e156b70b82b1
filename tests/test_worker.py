"""What happens to a row after its download ends, and who holds it: pure values, no I/O.

``decide`` case by case (dlstore.outcome), the runner carrying a decision out against
a recording store, and the ``host:pid:token`` worker id built and parsed
(dlstore.workerid). No subprocess, no database, no network.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlstore.config import Settings
from dlstore.engine import DownloadResult
from dlstore.errors import (
    CancelledError,
    PlaylistError,
    SegmentError,
    TransientDownloadError,
    UnsafePathError,
)
from dlstore.outcome import (
    RETRY_DELAY_CAP_SECONDS,
    Action,
    Decision,
    Outcome,
    Policy,
    StopReason,
    decide,
    retry_delay,
)
from dlstore.remux import MediaInfo
from dlstore.store import Claim
from dlstore.worker import TaskRunner
from dlstore.workerid import MAX_PID, WorkerId

POLICY = Policy(
    retries=3, first_retry_delay=30.0, temp_dir=Path("/srv/work"), output_dir=Path("/srv/videos")
)
VIDEO = Path("/srv/videos/Clip.mp4")
POSTER = Path("/srv/videos/Clip.jpg")
MEDIA = MediaInfo(
    duration=4.0,
    width=640,
    height=360,
    video_codec="h264",
    audio_codec="aac",
    size_bytes=1234,
    streams=2,
)
RESULT = DownloadResult(VIDEO, MEDIA, variant=None, segments=4, bytes_downloaded=1234)
HTTP_503 = TransientDownloadError("HTTP 503 from the server")


# --------------------------------------------------------------------------- decide


def test_a_completed_download_is_recorded_with_its_files():
    decision = decide(Outcome.completed(RESULT, POSTER), POLICY)
    assert decision == Decision(Action.COMPLETE, produced=(VIDEO, POSTER))


def test_a_download_completed_as_the_daemon_stops_is_still_recorded():
    decision = decide(Outcome.completed(RESULT, None, StopReason.SHUTDOWN), POLICY)
    assert decision == Decision(Action.COMPLETE, produced=(VIDEO,))


@pytest.mark.parametrize("reason", [StopReason.CANCELLED, StopReason.LOST])
def test_a_download_completed_after_its_row_went_away_is_not_recorded(reason):
    decision = decide(Outcome.completed(RESULT, POSTER, reason), POLICY)
    assert decision == Decision(Action.CLEAN_UP, produced=(VIDEO, POSTER))


def test_a_cancelled_download_writes_nothing():
    decision = decide(Outcome.raised(CancelledError(), StopReason.CANCELLED), POLICY)
    assert decision == Decision(Action.CLEAN_UP)


def test_a_cancelled_error_without_a_stop_reason_writes_nothing():
    assert decide(Outcome.raised(CancelledError()), POLICY) == Decision(Action.CLEAN_UP)


def test_a_lost_claim_writes_nothing():
    decision = decide(Outcome.raised(SegmentError("gone"), StopReason.LOST), POLICY)
    assert decision == Decision(Action.CLEAN_UP)


@pytest.mark.parametrize(
    "error", [CancelledError(), HTTP_503, PlaylistError(), OSError(28, "full"), ValueError("x")]
)
def test_a_daemon_stopping_releases_the_row_however_the_engine_ended(error):
    decision = decide(Outcome.raised(error, StopReason.SHUTDOWN, auto_retries=9), POLICY)
    assert decision == Decision(Action.RELEASE)


@pytest.mark.parametrize(("retries", "delay"), [(0, 30.0), (1, 60.0), (2, 120.0)])
def test_a_transient_error_requeues_the_row_later(retries, delay):
    decision = decide(Outcome.raised(HTTP_503, auto_retries=retries), POLICY)
    assert decision == Decision(
        Action.REQUEUE,
        message="HTTP 503 from the server",
        delay=delay,
        note=f"Will retry in {delay:.0f} s (automatic retry {retries + 1} of 3): "
        "HTTP 503 from the server",
        level=logging.WARNING,
    )


def test_a_transient_error_after_the_last_retry_fails_the_row():
    decision = decide(Outcome.raised(HTTP_503, auto_retries=3), POLICY)
    message = "Gave up after 4 attempts. The last one failed: HTTP 503 from the server"
    assert decision == Decision(Action.FAIL, message, note=message, level=logging.WARNING)


def test_no_automatic_retries_fails_the_first_transient_error():
    policy = dataclasses.replace(POLICY, retries=0)
    decision = decide(Outcome.raised(HTTP_503), policy)
    assert decision.action is Action.FAIL
    assert decision.message == "Gave up after 1 attempts. The last one failed: " + str(HTTP_503)


def test_a_permanent_error_fails_the_row_with_its_message():
    error = PlaylistError("The URL returned an HTML page, not a playlist.")
    decision = decide(Outcome.raised(error, auto_retries=1), POLICY)
    assert decision == Decision(
        Action.FAIL,
        "The URL returned an HTML page, not a playlist.",
        note="Failed: The URL returned an HTML page, not a playlist.",
        level=logging.WARNING,
    )


def test_a_refused_row_fails_with_the_reason():
    error = UnsafePathError()
    decision = decide(Outcome.refused(error), POLICY)
    assert decision == Decision(
        Action.FAIL, str(error), note=f"Cannot be downloaded: {error}", level=logging.WARNING
    )


def test_an_os_error_names_the_folders_to_check():
    error = OSError(28, "No space left on device")
    decision = decide(Outcome.raised(error), POLICY)
    assert decision == Decision(
        Action.FAIL,
        "Could not write the download's files ([Errno 28] No space left on device). Check the "
        "free space and the permissions of /srv/work and /srv/videos.",
        note="Failed: [Errno 28] No space left on device",
        level=logging.ERROR,
    )


def test_an_unexpected_error_fails_the_row_and_logs_the_traceback():
    """The row gets the error's type only: its text may quote what a server sent."""
    decision = decide(Outcome.raised(KeyError("SECRET-variant")), POLICY)
    assert decision == Decision(
        Action.FAIL,
        "dlstore hit an unexpected error (KeyError); the daemon's log has the "
        "details. Retry the task; report it if it happens again.",
        note="Unexpected error",
        level=logging.ERROR,
        traceback=True,
    )


def test_decisions_are_values():
    decision = decide(Outcome.raised(HTTP_503), POLICY)
    assert decision == decide(Outcome.raised(HTTP_503), POLICY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.delay = 0  # type: ignore[misc]


def test_the_policy_comes_from_the_settings():
    settings = Settings(task_retries=5, task_retry_delay=7.5, temp_dir=Path("t"))
    assert Policy.from_settings(settings) == Policy(5, 7.5, Path("t"), settings.output_dir)


def test_retry_delay_doubles_and_is_capped():
    assert [retry_delay(30, n) for n in range(4)] == [30, 60, 120, 240]
    assert retry_delay(30, 50) == 3600


@given(st.floats(0.01, 4000.0), st.integers(0, 10_000))
def test_retry_delay_never_shrinks_and_never_passes_the_cap(first, retries):
    delay = retry_delay(first, retries)
    assert delay <= RETRY_DELAY_CAP_SECONDS
    assert retry_delay(first, retries + 1) >= delay >= min(first, RETRY_DELAY_CAP_SECONDS)


# --------------------------------------------------------------------------- carrying it out


class RecordingStore:
    """The store calls a runner makes, recorded; every write touches a row unless told."""

    def __init__(self, *, touches: bool = True, status: str | None = "downloading") -> None:
        self.touches = touches
        self.status = status
        self.calls: list[tuple] = []

    def fail(self, claim: Claim, message: str) -> bool:
        self.calls.append(("fail", message))
        return self.touches

    def requeue(self, claim: Claim, message: str, *, run_after: str) -> bool:
        self.calls.append(("requeue", message))
        return self.touches

    def release(self, claim: Claim) -> bool:
        self.calls.append(("release",))
        return self.touches

    def restart(self, claim: Claim) -> bool:
        return False  # the row's url and metadata are as claimed

    def status_of(self, task_id: str) -> str | None:
        self.calls.append(("status_of", task_id))
        return self.status


def runner_on(store: RecordingStore, auto_retries: int = 0) -> TaskRunner:
    task = SimpleNamespace(id="t1", auto_retries=auto_retries)
    claim = Claim("t1", "here:1:x", 1)
    return TaskRunner(store, Settings(), task, claim, logger=logging.getLogger("test"))  # type: ignore[arg-type]


def test_the_runner_writes_what_was_decided(caplog):
    store = RecordingStore()
    with caplog.at_level(logging.WARNING):
        runner_on(store)._settle(Outcome.raised(HTTP_503))
    assert store.calls == [("requeue", str(HTTP_503))]
    assert "[task t1] Will retry in 30 s (automatic retry 1 of 3)" in caplog.text


def test_a_stop_reason_is_kept_once_given():
    runner = runner_on(RecordingStore())
    runner.stop(StopReason.SHUTDOWN)
    runner.stop(StopReason.LOST)
    assert runner.reason is StopReason.SHUTDOWN and runner.cancel.is_set()


def test_a_release_that_touches_no_row_looks_at_the_row_and_leaves_it(caplog):
    store = RecordingStore(touches=False, status="downloading")
    with caplog.at_level(logging.INFO):
        runner_on(store)._settle(Outcome.raised(CancelledError(), StopReason.SHUTDOWN))
    assert store.calls == [("release",), ("status_of", "t1")]
    assert "under another claim" in caplog.text


def test_an_unexpected_error_is_logged_with_its_traceback(caplog):
    store = RecordingStore()

    def boom() -> None:
        raise RuntimeError("bug")

    runner = runner_on(store)
    runner._run = boom  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        runner.run()
    assert store.calls[0][0] == "fail" and "(RuntimeError)" in store.calls[0][1]
    assert "bug" not in store.calls[0][1]
    assert caplog.records[-1].exc_info and caplog.records[-1].message.endswith("Unexpected error")


# --------------------------------------------------------------------------- worker ids


def test_a_new_worker_id_is_this_process_with_a_fresh_token():
    first, second = WorkerId.new("here"), WorkerId.new("here")
    assert str(first).startswith(f"here:{first.pid}:") and first.pid > 0
    assert first.token != second.token and len(first.token) == 8
    assert first.host_prefix == "here:"


@given(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
    st.integers(0, MAX_PID),
    st.text("0123456789abcdef", min_size=1, max_size=16),
)
def test_a_worker_id_reads_back_as_built(host, pid, token):
    built = WorkerId(host, pid, token)
    assert WorkerId.parse(str(built)) == built
    assert str(built).startswith(built.host_prefix)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "rust-api",
        "host:token",
        "host:pid:token",
        "host::token",
        "host:-4:token",
        "host:+4:token",
        "host: 4:token",
        "host:4_0:token",
        "host:٤:token",  # a digit, but not an ASCII one
        f"host:{MAX_PID + 1}:token",
        "host:99999999999999999999999:token",
    ],
)
def test_a_foreign_or_garbled_worker_id_is_not_ours(text):
    assert WorkerId.parse(text) is None


@given(st.text(max_size=60))
def test_parsing_any_text_never_fails_and_is_stable(text):
    parsed = WorkerId.parse(text)
    if parsed is not None:
        assert WorkerId.parse(str(parsed)) == parsed
        assert 0 <= parsed.pid <= MAX_PID
