"""One claimed task, run to its end: the row's path through the engine.

    claimed row ──prepare──▶ Job: URL, output name reserved for the task, its work
        │                    folder claimed, download options
        │                    (a bad row: ``fail`` with the reason, nothing fetched;
        │                    a file an earlier attempt placed but did not record:
        │                    ``complete`` with it, nothing fetched)
        ▼
    engine.download ──Progress──▶ ProgressReporter ──once a second──▶ report_progress
        │                              └─ write touched no row: cancelled, taken over or
        │                                 changed by the API → the engine's cancel event
        │                                 (a bug in the reporter: the same, and ``fail``)
        ▼
    poster frame ─▶ Outcome ──outcome.decide──▶ Decision, carried out here (one write):
        completed → ``complete``        transient error → ``requeue`` later, or ``fail``
                                        permanent error → ``fail`` (work folder kept)
                                        cancelled → partial files removed, row left alone
                                        daemon stopping → ``release`` (progress kept)
        a write that touched no row → url or metadata changed by the API: ``restart``
                                      (our file of the old ones removed, work folder kept);
                                      row cancelled or deleted: our files removed;
                                      held by another claim: everything left alone
        completed, failed for good, cancelled → the output name's reservation released
        (kept while the row waits for a retry, so the next attempt gets the same name)
        completed → the work folder removed, last (until then it records the placed file)

Only this task's own files are ever removed: its work folder (if it holds dlstore's
marker for this task), its own partial files and the video and poster it placed.

What each ending means is decided in :mod:`dlstore.outcome`; this module does the I/O.
Knows nothing of the daemon's loop; :class:`TaskRunner.run` is what its thread runs,
and :attr:`TaskRunner.settled` tells the daemon whether it ended with the row settled.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from dlstore import engine
from dlstore.config import Settings
from dlstore.errors import DlstoreError, DownloadError
from dlstore.logs import TaskLog
from dlstore.models import DownloadTask, Status
from dlstore.options import Job, prepare
from dlstore.outcome import Action, Decision, Outcome, Policy, StopReason, decide
from dlstore.paths import place_file, poster_path_for, release, remove_partials
from dlstore.progress import Progress
from dlstore.redact import redact_url
from dlstore.remux import make_poster
from dlstore.store import Claim, ProgressUpdate, TaskStore
from dlstore.timeutil import ts_after
from dlstore.workfolder import WorkFolder

#: How often a running task's row gets its progress and heartbeat: about once a
#: second, never more (CONTRACT.md §2).
PROGRESS_INTERVAL_SECONDS = 1.0
#: While downloading, progress stays below 100 until the file is in place.
RUNNING_PROGRESS_CAP = 99


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


class RunObserver:
    """What a run tells whoever watches it (the daemon's metrics); here, nobody."""

    def progress(self, progress: Progress) -> None:
        """A snapshot from the engine, about four a second."""

    def segment_retry(self, error: Exception) -> None:
        """A segment is tried again after ``error`` (called from a fetch thread)."""

    def settled(self, action: Action, error: BaseException | None) -> None:
        """The run ended in ``action``; ``error`` is what ended it, if anything did."""


class ProgressReporter:
    """Writes a task's latest progress (or just a heartbeat) once a second, on its own thread.

    The engine hands progress in through :meth:`update` as often as it likes; the
    database sees one write per interval. A write that touches no row means the
    claim is gone: ``on_lost`` is called once and the reporter stops. A database
    error is retried at the next interval; any other exception is a bug that would
    leave the row without heartbeats: ``on_broken`` gets it and the reporter stops.
    """

    def __init__(
        self,
        store: TaskStore,
        claim: Claim,
        *,
        on_lost: Callable[[], None],
        on_broken: Callable[[BaseException], None],
        log: logging.LoggerAdapter,
        interval: float = PROGRESS_INTERVAL_SECONDS,
    ) -> None:
        self._store = store
        self._claim = claim
        self._on_lost = on_lost
        self._on_broken = on_broken
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
            try:
                ok = self._write()
            except Exception as exc:  # noqa: BLE001 - a bug: the row must not go silent
                self._stop.set()
                self._log.error("Progress reporting stopped unexpectedly", exc_info=exc)
                self._on_broken(exc)
                return
            if not ok:
                self._stop.set()
                self._on_lost()
                return

    def _write(self) -> bool:
        progress, note = self._latest, self._note
        try:
            if progress is None or (progress.segments_total <= 0 and progress.fraction is None):
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
    """Runs one claimed task; :meth:`stop` asks it to end, :meth:`abort` to end now.

    ``stop(StopReason.SHUTDOWN)`` drains: no new segment starts, those in flight
    finish (the engine's ``drain`` event). Any other reason, and :meth:`abort`, set the
    engine's ``cancel`` event: in-flight requests are shut down at once.
    """

    def __init__(
        self,
        store: TaskStore,
        settings: Settings,
        task: DownloadTask,
        claim: Claim,
        *,
        logger: logging.Logger,
        observer: RunObserver | None = None,
    ) -> None:
        self.store = store
        self.observer = observer or RunObserver()
        self.settings = settings
        self.policy = Policy.from_settings(settings)
        self.task = task
        self.claim = claim
        self.log = TaskLog(logger, task.id)
        self.cancel = threading.Event()  # the engine's cancel event: stop now
        self.drain = threading.Event()  # the engine's drain event: start no new segment
        self._reason: StopReason | None = None
        self._lock = threading.Lock()
        self._broken: BaseException | None = None  # what stopped the progress reporter
        self.job: Job | None = None
        #: True once the row's outcome is written, or left to the lease on purpose; a
        #: thread that ends before that died, and the daemon fails the row.
        self.settled = False

    @property
    def reason(self) -> StopReason | None:
        return self._reason

    def stop(self, reason: StopReason) -> None:
        """Stop the download; the first reason given is the one acted on. A shutdown
        lets the segments in flight finish; any other reason stops them too."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
        if reason is StopReason.SHUTDOWN:
            self.drain.set()
        else:
            self.cancel.set()

    def abort(self) -> None:
        """Stop now, in-flight segments too (a shutdown whose grace has run out)."""
        self.drain.set()
        self.cancel.set()

    def run(self) -> None:
        """The task to its end. Whatever escapes (a BaseException, a bug while failing the
        row) leaves :attr:`settled` False, for the daemon to fail the row."""
        try:
            self._run()
        except DlstoreError as exc:
            # Recording the outcome failed (the database is unreachable): the row
            # stays `downloading` and is reclaimed once its lease runs out.
            self.log.error("Could not record the outcome: %s", exc)
            self.settled = True
        except Exception as exc:
            # A bug outside the download itself: the row fails, whatever the stop reason.
            with contextlib.suppress(DlstoreError):
                self._settle(Outcome.raised(exc))

    # --- the run ---------------------------------------------------------------------

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self.job = job = prepare(self.task, self.settings)
        except DlstoreError as exc:
            self._settle(Outcome.refused(exc))
            return
        if job.placed is not None:
            self._complete_placed(job)
            return
        self.log.info(
            "Downloading %s to %s (attempt %s)",
            redact_url(job.url),
            job.output_path,
            self.claim.attempt,
        )
        reporter = ProgressReporter(
            self.store, self.claim, on_lost=self._on_lost, on_broken=self._on_broken, log=self.log
        )
        reporter.start()
        try:
            result = engine.download(
                job.url,
                job.output_path,
                work_dir=job.work_dir,
                options=replace(job.options, on_segment_retry=self.observer.segment_retry),
                on_progress=self._observed(reporter.update),
                cancel=self.cancel,
                log=self.log,
                drain=self.drain,
                keep_work_folder=True,  # it records the placed file until the row does
            )
            reporter.note("Making the poster frame")
            poster = self._poster(job, result.output_path)
        except Exception as exc:
            reporter.stop()
            error = self._broken or exc
            self._settle(Outcome.raised(error, self.reason, self.task.auto_retries or 0))
            return
        finally:
            reporter.stop()
        outcome = Outcome.completed(result, poster, self.reason)
        self._settle(outcome, reporter.latest, time.monotonic() - started)

    def _observed(self, report: Callable[[Progress], None]) -> Callable[[Progress], None]:
        """``report``, with the observer seeing each snapshot too."""

        def both(progress: Progress) -> None:
            report(progress)
            self.observer.progress(progress)

        return both

    def _complete_placed(self, job: Job) -> None:
        """An earlier attempt placed the file but could not record it: record it now."""
        assert job.placed is not None
        try:
            result = engine.DownloadResult.from_record(job.placed)
        except ValueError as exc:
            WorkFolder(job.work_dir, owner=self.task.id).forget_placed()
            error = DownloadError(
                f"The work folder's record of {job.placed.path} cannot be read ({exc}); "
                "retry the task to download it again."
            )
            self._settle(Outcome.raised(error, self.reason))
            return
        self.log.info(
            "%s was placed by an earlier attempt (%d bytes, unchanged): recording it, "
            "nothing fetched",
            job.placed.path,
            job.placed.size,
        )
        poster = poster_path_for(job.placed.path)
        if not poster.is_file():
            poster = self._poster(job, job.placed.path)
        self._settle(Outcome.completed(result, poster, self.reason))

    def _poster(self, job: Job, video: Path) -> Path | None:
        """The poster frame, named after the video; never put over a file already there."""
        poster = poster_path_for(video)
        tmp = WorkFolder(job.work_dir).temp_file_for(poster)
        try:
            make_poster(video, tmp)
            place_file(tmp, poster)  # refuses (DownloadError) if a file has the name
            return poster
        except (DlstoreError, OSError) as exc:
            self.log.warning("No poster frame: %s", exc)
            return None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    # --- carrying out the decision -----------------------------------------------------

    def _settle(
        self, outcome: Outcome, progress: Progress | None = None, seconds: float = 0.0
    ) -> None:
        """Write what :func:`~dlstore.outcome.decide` makes of ``outcome``."""
        decision = decide(outcome, self.policy)
        self.observer.settled(decision.action, outcome.error)
        if decision.note:
            exc_info = outcome.error if decision.traceback else None
            self.log.log(decision.level, "%s", decision.note, exc_info=exc_info)
        if not self._write(decision, outcome, progress, seconds):
            self._after_lost_write(decision.produced)
        elif decision.action in (Action.COMPLETE, Action.FAIL):
            self._release_output()  # the row has ended: its name is no longer held
            if decision.action is Action.COMPLETE:
                self._remove_work_folder()  # last: until now it recorded the placed file
        self.settled = True

    def _write(
        self, decision: Decision, outcome: Outcome, progress: Progress | None, seconds: float
    ) -> bool:
        """The decision's one store transition; False if it touched no row (or there is none)."""
        action = decision.action
        if action is Action.COMPLETE and outcome.result is not None:
            return self._complete(outcome.result, outcome.poster, progress, seconds)
        if action is Action.REQUEUE:
            run_after = ts_after(decision.delay)
            return self.store.requeue(self.claim, decision.message, run_after=run_after)
        if action is Action.FAIL:
            return self.store.fail(self.claim, decision.message)
        if action is Action.RELEASE:
            released = self.store.release(self.claim)
            if released:
                self.log.info("Released for the next daemon; what was fetched is kept")
            return released
        return False  # CLEAN_UP

    def _complete(
        self,
        result: engine.DownloadResult,
        poster: Path | None,
        progress: Progress | None,
        seconds: float,
    ) -> bool:
        learned = {
            **result.media.as_metadata(),
            "variant": result.variant,
            **result.tracks_metadata(),
            "poster": str(poster) if poster else None,
        }
        if result.live_gaps is not None:  # Streams (#12): a live recording's gaps
            learned["live_gaps"] = result.live_gaps
        done = self.store.complete(
            self.claim,
            output_path=str(result.output_path),
            learned=learned,
            downloaded_bytes=progress.bytes_done if progress else None,
            total_segments=result.segments,
        )
        if done:
            self.log.info(
                "Completed in %.1f s: %s (%s, %.1f s, %d bytes)",
                seconds,
                result.output_path,
                learned.get("resolution") or "no video",
                result.media.duration,
                result.media.size_bytes,
            )
        return done

    # --- when the row is no longer ours -------------------------------------------------

    def _on_broken(self, error: BaseException) -> None:
        """The progress reporter died: stop the engine; the row fails with ``error``."""
        self._broken = error
        self.cancel.set()

    def _on_lost(self) -> None:
        """The reporter's write touched no row: find out why, and stop the engine."""
        try:
            status = self.store.status_of(self.task.id)
        except DlstoreError:
            status = None
        self.stop(StopReason.CANCELLED if status == Status.CANCELLED.value else StopReason.LOST)

    def _after_lost_write(self, produced: Sequence[Path] = ()) -> None:
        """A final write touched no row. If the API changed its url or metadata, put it back
        to pending for the new ones (what we made of the old ones goes; the work folder
        stays, for a resume). If the row was cancelled (or deleted), remove what we made;
        if it is someone else's now, touch nothing."""
        try:
            restarted = self.store.restart(self.claim)
            status = None if restarted else self.store.status_of(self.task.id)
        except DlstoreError as exc:
            self.log.error("The row changed under us and cannot be read: %s", exc)
            return
        if restarted:
            for path in produced:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            self.log.warning("Its URL or settings changed while downloading: back to pending")
        elif status == Status.CANCELLED.value:
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
        """Remove this task's files: its work folder, the video and poster this attempt
        placed (``produced``), its partial files; then give its output name back."""
        if self.job is None:
            return
        for path in produced:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._release_output()
        self._remove_work_folder()  # last: what is left behind is found through it

    def _remove_work_folder(self) -> None:
        if self.job is None:
            return
        try:
            WorkFolder(self.job.work_dir, owner=self.task.id).remove()
        except (DlstoreError, OSError) as exc:
            self.log.warning("Work folder left alone: %s", exc)

    def _release_output(self) -> None:
        """Remove this task's partial files beside its output (those of every attempt, under
        any name: they share the work folder's tag) and release the output name."""
        job = self.job
        if job is None:
            return
        try:
            remove_partials(job.output_path.parent, WorkFolder(job.work_dir).part_tag)
            release(job.output_path, self.task.id)
        except OSError as exc:
            self.log.warning("Could not remove the reservation of %s: %s", job.output_path, exc)
