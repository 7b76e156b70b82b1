"""What happens to a row once its download has ended: a pure function, no I/O.

    Outcome (how the attempt ended) ──decide(outcome, policy)──▶ Decision (what to write)

    refused row (prepare raised)       → FAIL with the reason, nothing fetched
    completed                          → COMPLETE (even when the daemon is stopping)
      … but cancelled or lost meanwhile → CLEAN_UP, the new files with it
    stopped or CancelledError:
      daemon stopping                  → RELEASE (progress kept, attempt not counted)
      cancelled, lost                  → CLEAN_UP
    transient DlstoreError             → REQUEUE after retry_delay, or FAIL "Gave up after …"
    permanent DlstoreError             → FAIL with its message (work folder kept)
    OSError                            → FAIL naming temp_dir and output_dir
    anything else                      → FAIL "dlstore hit an unexpected error …"

:class:`~dlstore.worker.TaskRunner` builds the :class:`Outcome`, calls :func:`decide`
and carries the :class:`Decision` out; a write that touches no row ends in CLEAN_UP's
check of the row. Modelled on procrastinate's ``RetryStrategy`` → ``RetryDecision``.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dlstore.errors import CancelledError, DlstoreError

if TYPE_CHECKING:
    from dlstore.config import Settings
    from dlstore.engine import DownloadResult

#: The longest wait before an automatic retry, however many came before.
RETRY_DELAY_CAP_SECONDS = 3600.0


class StopReason(enum.Enum):
    """Why a runner was told to stop."""

    SHUTDOWN = "shutdown"  # the daemon is stopping: release the row
    CANCELLED = "cancelled"  # the row was cancelled: remove partial files
    LOST = "lost"  # the row was reclaimed or retried elsewhere: leave everything alone


class Action(enum.Enum):
    """The store transition a :class:`Decision` asks for."""

    COMPLETE = "complete"  # store.complete: the file is in place
    REQUEUE = "requeue"  # store.requeue, due after Decision.delay
    FAIL = "fail"  # store.fail with Decision.message
    RELEASE = "release"  # store.release: back to pending for the next daemon
    #: No write: the row is not ours any more. What this attempt made goes if the row
    #: was cancelled or deleted; if another claim holds it, everything is left alone.
    CLEAN_UP = "clean_up"


@dataclass(frozen=True)
class Policy:
    """What :func:`decide` needs from the settings."""

    retries: int  # automatic re-queues of a transient failure before `failed`
    first_retry_delay: float  # seconds; doubles with each automatic retry
    temp_dir: Path  # named, with output_dir, when files cannot be written
    output_dir: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            retries=settings.task_retries,
            first_retry_delay=settings.task_retry_delay,
            temp_dir=settings.temp_dir,
            output_dir=settings.output_dir,
        )


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended. Build it with :meth:`completed`, :meth:`raised` or
    :meth:`refused`."""

    result: DownloadResult | None = None
    poster: Path | None = None
    error: BaseException | None = None
    stop: StopReason | None = None  # the first reason the runner was told to stop
    auto_retries: int = 0  # automatic retries before this attempt
    prepared: bool = True  # False: the row itself was refused, nothing was fetched

    @classmethod
    def completed(
        cls, result: DownloadResult, poster: Path | None = None, stop: StopReason | None = None
    ) -> Outcome:
        return cls(result=result, poster=poster, stop=stop)

    @classmethod
    def raised(
        cls, error: BaseException, stop: StopReason | None = None, auto_retries: int = 0
    ) -> Outcome:
        return cls(error=error, stop=stop, auto_retries=auto_retries)

    @classmethod
    def refused(cls, error: DlstoreError) -> Outcome:
        """The row could not be turned into a download (a bad URL, name, metadata…)."""
        return cls(error=error, prepared=False)

    @property
    def produced(self) -> tuple[Path, ...]:
        """The files this attempt put in the output folder."""
        if self.result is None:
            return ()
        poster = (self.poster,) if self.poster else ()
        return (self.result.output_path, *self.result.subtitle_files, *poster)


@dataclass(frozen=True)
class Decision:
    """What to write, and what to log before writing it."""

    action: Action
    message: str = ""  # FAIL: the error_message; REQUEUE: the error that caused it
    delay: float = 0.0  # REQUEUE: seconds until the row is due again
    #: Removed if the row turns out cancelled or deleted (CLEAN_UP, or a write that
    #: touched no row).
    produced: tuple[Path, ...] = ()
    note: str | None = None  # logged before the write
    level: int = logging.INFO
    traceback: bool = False  # log the error's traceback with the note


def retry_delay(first_delay: float, retries_so_far: int) -> float:
    """Seconds before the next automatic retry: doubling from ``first_delay``, capped."""
    return min(RETRY_DELAY_CAP_SECONDS, first_delay * (2 ** min(retries_so_far, 30)))


def decide(outcome: Outcome, policy: Policy) -> Decision:
    """The one place that turns how a download ended into what happens to its row."""
    error = outcome.error
    if error is None:
        return _after_success(outcome)
    if not outcome.prepared:
        return _fail(str(error), f"Cannot be downloaded: {error}")
    if outcome.stop is not None or isinstance(error, CancelledError):
        return _after_stop(outcome.stop)
    if isinstance(error, DlstoreError) and error.transient:
        return _after_transient(error, outcome.auto_retries, policy)
    if isinstance(error, DlstoreError):
        return _fail(str(error), f"Failed: {error}")
    if isinstance(error, OSError):
        message = (
            f"Could not write the download's files ({error}). Check the free space and the "
            f"permissions of {policy.temp_dir} and {policy.output_dir}."
        )
        return _fail(message, f"Failed: {error}", level=logging.ERROR)
    # Its type only: the error's text may quote what a server sent (the log has it).
    message = (
        f"dlstore hit an unexpected error ({type(error).__name__}); "
        "the daemon's log has the details. Retry the task; report it if it happens again."
    )
    return _fail(message, "Unexpected error", level=logging.ERROR, traceback=True)


def _after_success(outcome: Outcome) -> Decision:
    if outcome.stop in (StopReason.CANCELLED, StopReason.LOST):
        return Decision(Action.CLEAN_UP, produced=outcome.produced)
    # Even when the daemon is stopping: the file is in place, record it.
    return Decision(Action.COMPLETE, produced=outcome.produced)


def _after_stop(reason: StopReason | None) -> Decision:
    if reason is StopReason.SHUTDOWN:
        return Decision(Action.RELEASE)
    return Decision(Action.CLEAN_UP)


def _after_transient(error: DlstoreError, retries: int, policy: Policy) -> Decision:
    if retries >= policy.retries:
        message = f"Gave up after {retries + 1} attempts. The last one failed: {error}"
        return _fail(message, message)
    delay = retry_delay(policy.first_retry_delay, retries)
    note = (
        f"Will retry in {delay:.0f} s (automatic retry {retries + 1} of {policy.retries}): {error}"
    )
    return Decision(
        Action.REQUEUE, message=str(error), delay=delay, note=note, level=logging.WARNING
    )


def _fail(
    message: str, note: str, *, level: int = logging.WARNING, traceback: bool = False
) -> Decision:
    return Decision(Action.FAIL, message=message, note=note, level=level, traceback=traceback)
