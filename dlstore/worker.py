"""One claimed task, run to its end: the row's path through the engine.

    claimed row ──prepare──▶ Job: URL, output file, work folder, download options
        │                    (a bad row: ``fail`` with the reason, nothing fetched)
        ▼
    engine.download ──Progress──▶ ProgressReporter ──once a second──▶ report_progress
        │                              └─ write touched no row: cancelled or taken over
        │                                 → the engine's cancel event
        ▼
    poster frame → ``complete``        transient error → ``requeue`` later, or ``fail``
                                       permanent error → ``fail`` (work folder kept)
                                       cancelled → partial files removed, row left alone
                                       daemon stopping → ``release`` (progress kept)

Knows nothing of the daemon's loop; :class:`TaskRunner.run` is what its thread runs.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from dlstore import engine
from dlstore.config import Settings
from dlstore.errors import CancelledError, DlstoreError
from dlstore.logs import TaskLog
from dlstore.models import DownloadTask, Status
from dlstore.options import Job, prepare
from dlstore.progress import Progress
from dlstore.remux import make_poster
from dlstore.store import Claim, ProgressUpdate, TaskStore
from dlstore.timeutil import ts_after

#: How often a running task's row gets its progress and heartbeat: about once a
#: second, never more (CONTRACT.md §2).
PROGRESS_INTERVAL_SECONDS = 1.0
#: The longest wait before an automatic retry, however many came before.
RETRY_DELAY_CAP_SECONDS = 3600.0
#: While downloading, progress stays below 100 until the file is in place.
RUNNING_PROGRESS_CAP = 99

# Why a runner was told to stop.
SHUTDOWN = "shutdown"  # the daemon is stopping: release the row
CANCELLED = "cancelled"  # the row was cancelled: remove partial files
LOST = "lost"  # the row was reclaimed or retried elsewhere: leave everything alone


def retry_delay(first_delay: float, retries_so_far: int) -> float:
    """Seconds before the next automatic retry: doubling from ``first_delay``, capped."""
    return min(RETRY_DELAY_CAP_SECONDS, first_delay * (2 ** min(retries_so_far, 30)))


def progress_update(progress: Progress, message: str | None = None) -> ProgressUpdate:
    return ProgressUpdate(
        progress=min(RUNNING_PROGRESS_CAP, progress.percent),
        downloaded_segments=progress.segments_done,
        total_segments=progress.segments_total or None,
        downloaded_bytes=progress.bytes_done,
        speed_bps=progress.speed_bps,
        eta_seconds=progress.eta_seconds,
        current_file=progress.current_file,
        message=message or progress.message,
    )


class ProgressReporter:
    """Writes a task's latest progress (or just a heartbeat) once a second, on its own thread.

    The engine hands progress in through :meth:`update` as often as it likes; the
    database sees one write per interval. A write that touches no row means the
    claim is gone: ``on_lost`` is called once and the reporter stops.
    """

    def __init__(
        self,
        store: TaskStore,
        claim: Claim,
        *,
        on_lost: Callable[[], None],
        log: logging.LoggerAdapter,
        interval: float = PROGRESS_INTERVAL_SECONDS,
    ) -> None:
        self._store = store
        self._claim = claim
        self._on_lost = on_lost
        self._log = log
        self._interval = interval
        self._latest: Progress | None = None
        self._note: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"dlstore-progress-{claim.task_id[:8]}", daemon=True
        )
        self.writes = 0

    @property
    def latest(self) -> Progress | None:
        return self._latest

    def update(self, progress: Progress) -> None:
        self._latest = progress
        self._note = None

    def note(self, message: str) -> None:
        """What is happening when the engine is not reporting (e.g. making the poster)."""
        self._note = message

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """No write starts after this returns."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            if not self._write():
                self._stop.set()
                self._on_lost()
                return

    def _write(self) -> bool:
        progress, note = self._latest, self._note
        try:
            if progress is None or progress.segments_total <= 0:
                # Nothing counted yet (the playlist is being fetched): keep the row's
                # progress from an earlier attempt, prove we are alive.
                message = note or (progress.message if progress else None)
                ok = self._store.heartbeat(self._claim, message)
            else:
                ok = self._store.report_progress(self._claim, progress_update(progress, note))
        except DlstoreError as exc:
            self._log.warning("Could not record progress (will try again): %s", exc)
            return True
        self.writes += 1
        return ok


class TaskRunner:
    """Runs one claimed task; :meth:`stop` asks it to end at the next segment boundary."""

    def __init__(
        self,
        store: TaskStore,
        settings: Settings,
        task: DownloadTask,
        claim: Claim,
        *,
        logger: logging.Logger,
    ) -> None:
        self.store = store
        self.settings = settings
        self.task = task
        self.claim = claim
        self.log = TaskLog(logger, task.id)
        self.cancel = threading.Event()  # the engine's cancel event
        self._reason: str | None = None
        self._lock = threading.Lock()
        self.job: Job | None = None

    @property
    def reason(self) -> str | None:
        return self._reason

    def stop(self, reason: str) -> None:
        """Stop the download; the first reason given is the one acted on."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
        self.cancel.set()

    def run(self) -> None:
        try:
            self._run()
        except DlstoreError as exc:
            # Recording the outcome failed (the database is unreachable): the row
            # stays `downloading` and is reclaimed once its lease runs out.
            self.log.error("Could not record the outcome: %s", exc)
        except Exception as exc:
            self.log.exception("Unexpected error")
            message = (
                f"dlstore hit an unexpected error ({type(exc).__name__}: {exc}); "
                "the daemon's log has the details. Retry the task; report it if it happens again."
            )
            with contextlib.suppress(DlstoreError):
                self._fail(message)

    # --- the run ---------------------------------------------------------------------

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self.job = job = prepare(self.task, self.settings)
        except DlstoreError as exc:
            self.log.warning("Cannot be downloaded: %s", exc)
            self._fail(str(exc))
            return
        self.log.info(
            "Downloading %s to %s (attempt %s)", job.url, job.output_path, self.claim.attempt
        )
        reporter = ProgressReporter(self.store, self.claim, on_lost=self._on_lost, log=self.log)
        reporter.start()
        try:
            result = engine.download(
                job.url,
                job.output_path,
                work_dir=job.work_dir,
                options=job.options,
                on_progress=reporter.update,
                cancel=self.cancel,
            )
            reporter.note("Making the poster frame")
            poster = self._poster(result.output_path)
        except Exception as exc:
            reporter.stop()
            self._settle_error(exc)
            return
        finally:
            reporter.stop()
        self._settle_success(result, poster, reporter.latest, time.monotonic() - started)

    def _poster(self, video: Path) -> Path | None:
        poster = video.with_suffix(".jpg")
        try:
            return make_poster(video, poster)
        except (DlstoreError, OSError) as exc:
            self.log.warning("No poster frame: %s", exc)
            return None

    def _settle_success(
        self,
        result: engine.DownloadResult,
        poster: Path | None,
        progress: Progress | None,
        seconds: float,
    ) -> None:
        produced = [result.output_path] + ([poster] if poster else [])
        if self.reason in (CANCELLED, LOST):
            self._after_lost_write(produced)
            return
        # Even when the daemon is stopping: the file is in place, record it.
        learned = {
            **result.media.as_metadata(),
            "variant": result.variant,
            "poster": str(poster) if poster else None,
        }
        done = self.store.complete(
            self.claim,
            output_path=str(result.output_path),
            learned=learned,
            downloaded_bytes=progress.bytes_done if progress else None,
            total_segments=result.segments,
        )
        if not done:
            self._after_lost_write(produced)
            return
        self.log.info(
            "Completed in %.1f s: %s (%s, %.1f s, %d bytes)",
            seconds,
            result.output_path,
            learned.get("resolution") or "no video",
            result.media.duration,
            result.media.size_bytes,
        )

    def _settle_error(self, exc: Exception) -> None:
        if self.cancel.is_set() or isinstance(exc, CancelledError):
            self._stopped()
        elif isinstance(exc, DlstoreError) and exc.transient:
            self._retry_later(exc)
        elif isinstance(exc, DlstoreError):
            self.log.warning("Failed: %s", exc)
            self._fail(str(exc))
        elif isinstance(exc, OSError):
            self.log.error("Failed: %s", exc)
            self._fail(
                f"Could not write the download's files ({exc}). Check the free space and the "
                f"permissions of {self.settings.temp_dir} and {self.settings.output_dir}."
            )
        else:
            raise exc

    def _stopped(self) -> None:
        if self.reason == SHUTDOWN:
            if self.store.release(self.claim):
                self.log.info("Released for the next daemon; what was fetched is kept")
            else:
                self._after_lost_write()
        else:
            self._after_lost_write()

    def _retry_later(self, exc: DlstoreError) -> None:
        retries = self.task.auto_retries or 0
        if retries >= self.settings.task_retries:
            message = f"Gave up after {retries + 1} attempts. The last one failed: {exc}"
            self.log.warning("%s", message)
            self._fail(message)
            return
        delay = retry_delay(self.settings.task_retry_delay, retries)
        self.log.warning(
            "Will retry in %.0f s (automatic retry %d of %d): %s",
            delay,
            retries + 1,
            self.settings.task_retries,
            exc,
        )
        if not self.store.requeue(self.claim, str(exc), run_after=ts_after(delay)):
            self._after_lost_write()

    def _fail(self, message: str) -> None:
        if not self.store.fail(self.claim, message):
            self._after_lost_write()

    # --- when the row is no longer ours -------------------------------------------------

    def _on_lost(self) -> None:
        """The reporter's write touched no row: find out why, and stop the engine."""
        try:
            status = self.store.status_of(self.task.id)
        except DlstoreError:
            status = None
        self.stop(CANCELLED if status == Status.CANCELLED.value else LOST)

    def _after_lost_write(self, produced: Sequence[Path] = ()) -> None:
        """A final write touched no row. If the row was cancelled (or deleted), remove what we
        made; if it is someone else's now, touch nothing."""
        try:
            status = self.store.status_of(self.task.id)
        except DlstoreError as exc:
            self.log.error("The row changed under us and cannot be read: %s", exc)
            return
        if status == Status.CANCELLED.value:
            self._remove_files(produced)
            self.log.info("Cancelled; partial files removed")
        elif status is None:
            self._remove_files(produced)
            self.log.info("The row was deleted; partial files removed")
        else:
            self.log.warning(
                "The row is now %s under another claim (reclaimed, or retried and claimed "
                "again); leaving it alone",
                status,
            )

    def _remove_files(self, produced: Sequence[Path]) -> None:
        job = self.job
        if job is None:
            return
        shutil.rmtree(job.work_dir, ignore_errors=True)
        pattern = f".{glob.escape(job.output_path.name)}.*.part"
        leftovers = list(job.output_path.parent.glob(pattern))
        for path in [*produced, *leftovers]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
