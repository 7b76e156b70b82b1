"""``dlstore daemon``: the loop that turns pending rows into videos.

The loop runs on a thread of its own ("dlstore-loop"); the main thread only waits
for signals (through :class:`~dlstore.signals.SignalPipe`) and runs the shutdown,
and never calls the database: a signal lands at once even while the loop waits for
a database lock.

    start ─▶ housekeeping ─▶ READY=1
      ┌─▶ reap finished runners; a runner whose thread died fails its row
      │   housekeeping, every RECLAIM_INTERVAL_SECONDS (or half the lease, if shorter):
      │     rows whose lease expired (by the database's clock), rows whose holder is
      │     certainly gone (this host, boot and pid namespace; its process ended) → pending;
      │     rows with a status dlstore does not know → failed;
      │     what rows cancelled or completed while no daemon was at them left behind → removed
      │   the pause switch read (dlstore_queue): paused → claim nothing, runners go on
      │   claim while fewer than max_concurrent_tasks run, passing over rows whose URL host
      │   has max_per_host downloads running here; one TaskRunner thread each
      │   --exit-when-idle, nothing running and nothing due (or paused) → leave the loop
      └── wait (dlstore.wakeup): poll_interval (less up to POLL_JITTER), a runner ending,
          a signal, or, while a slot is free, a change in the database (PostgreSQL:
          LISTEN/NOTIFY; SQLite: PRAGMA data_version); never longer than the next
          watchdog ping
    SIGTERM/SIGINT ─▶ STOPPING=1 ─▶ no new claim, no new segment; the segments in flight
      finish, for at most ``shutdown_grace`` seconds ─▶ what still runs is aborted ─▶ each
      runner releases its row (progress kept, attempt not counted), for at most
      SHUTDOWN_ABORT_SECONDS more ─▶ return (a row still held is taken over at the next
      start on this host, or after the lease elsewhere)
    a second signal ─▶ exit at once (rows are reclaimed at the next start on this host)

An idle daemon wakes once per poll interval for two short reads and one short write
(the claim, which finds nothing); no transaction stays open between them. A row the
API inserts wakes it at once (on SQLite within WATCH_INTERVAL_SECONDS).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from dlstore import wakeup
from dlstore.config import Settings, parse_listen
from dlstore.errors import ConfigError, DlstoreError
from dlstore.hosts import url_host
from dlstore.metrics import LOOP_STALE_SECONDS, DaemonMetrics, MetricsServer
from dlstore.models import DownloadTask, Status
from dlstore.outcome import StopReason
from dlstore.redact import escape_controls
from dlstore.sdnotify import Notifier
from dlstore.signals import SignalPipe
from dlstore.store import Claim, QueueState, TaskStore
from dlstore.sweep import sweep_orphans
from dlstore.timeutil import now_ts
from dlstore.worker import PROGRESS_INTERVAL_SECONDS, TaskRunner
from dlstore.workerid import WorkerId, holder_is_gone

#: The wait between looks for pending rows is poll_interval shortened by up to this
#: share, so that daemons started together drift apart and a new row still starts
#: within one poll interval.
POLL_JITTER = 0.25
#: How often orphaned rows are looked for (at most half the lease).
RECLAIM_INTERVAL_SECONDS = 30.0
#: A lease must outlast a few missed heartbeats.
MIN_LEASE_SECONDS = 3 * PROGRESS_INTERVAL_SECONDS
#: After ``shutdown_grace``, how long a stopping daemon waits for its aborted downloads
#: to release their rows before it exits anyway.
SHUTDOWN_ABORT_SECONDS = 3.0
#: At the end of a shutdown, how long failing the rows of runners that died may take.
REAP_WAIT_SECONDS = 1.0
#: The wait after a database error before trying again.
ERROR_BACKOFF_SECONDS = 5.0
#: The signal-waiting thread's longest sleep (it also wakes when the loop or a runner ends).
SIGNAL_TICK_SECONDS = 1.0

KNOWN_STATUSES = tuple(s.value for s in Status)


@dataclass
class _Running:
    runner: TaskRunner
    thread: threading.Thread
    done: threading.Event = field(default_factory=threading.Event)
    #: A runner of the same task still winding down (the row was cancelled and retried,
    #: and claimed again before it noticed): this one starts when that one has ended.
    previous: _Running | None = None
    #: What ended the thread, if it escaped the runner.
    died: BaseException | None = None


class Daemon:
    def __init__(
        self,
        store: TaskStore,
        settings: Settings,
        *,
        notifier: Notifier | None = None,
        exit_when_idle: bool = False,
        host: str | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if settings.lease_seconds < MIN_LEASE_SECONDS:
            raise ConfigError(
                f"lease_seconds: must be at least {MIN_LEASE_SECONDS:g} s (progress is written "
                f"every {PROGRESS_INTERVAL_SECONDS:g} s), got {settings.lease_seconds:g}."
            )
        self.store = store
        self.settings = settings
        self.notifier = notifier or Notifier()
        self.exit_when_idle = exit_when_idle
        self.log = logger or logging.getLogger("dlstore.daemon")
        self.worker_id = WorkerId.new(host)
        self.reclaim_interval = min(RECLAIM_INTERVAL_SECONDS, settings.lease_seconds / 2)
        self.stopping = threading.Event()
        self._wake = wakeup.for_engine(store.engine)
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()  # guards _running: the loop and the shutdown share it
        self._pipe = SignalPipe()
        self._signals = 0
        self._status: str | None = None
        self._queue = QueueState(False)
        self.metrics = DaemonMetrics(
            store,
            running=lambda: len(self._running),
            stale_after=max(LOOP_STALE_SECONDS, 3 * settings.poll_interval),
        )
        self._metrics_server: MetricsServer | None = None
        self._loop_error: BaseException | None = None

    # --- control -------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop (from any thread): the loop claims nothing more, :meth:`run` shuts down."""
        self.stopping.set()
        self._wake.set()
        self._pipe.poke()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: stop cleanly; a second one: exit at once. Main thread only."""
        self._pipe.install((signal.SIGTERM, signal.SIGINT))

    def _handle_signals(self, seconds: float) -> None:
        """Wait up to ``seconds`` for a signal (or a poke), and act on those that came."""
        for signum in self._pipe.wait(seconds):
            self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        """A signal, read from the pipe: ordinary code, not a signal handler."""
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals > 1:
            os.write(2, f"dlstore daemon: second {name}: exiting at once\n".encode())
            os._exit(128 + signum)
        self.log.info("%s received: finishing the segments in flight, then stopping", name)
        self.request_stop()

    # --- the loop ------------------------------------------------------------------

    def run(self) -> None:
        """Run the loop on its own thread until a stop (or --exit-when-idle), then shut down.

        This thread waits for signals meanwhile. What the loop raised is raised here,
        after the shutdown."""
        loop = threading.Thread(target=self._run_loop, name="dlstore-loop", daemon=True)
        loop.start()
        try:
            while loop.is_alive() and not self.stopping.is_set():
                self._handle_signals(SIGNAL_TICK_SECONDS)
        finally:
            self.stopping.set()
            self._wake.set()
            self._shutdown()
        if self._loop_error is not None:
            raise self._loop_error

    def _run_loop(self) -> None:
        """The loop thread's target: whatever ends the loop, the main thread hears of it."""
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - raised again by run()
            self._loop_error = exc

    def _loop(self) -> None:
        s = self.settings
        self.log.info(
            "Daemon %s started: up to %d downloads, polling every %g s, lease %g s, "
            "output %s, work folders %s",
            self.worker_id,
            s.max_concurrent_tasks,
            s.poll_interval,
            s.lease_seconds,
            s.output_dir,
            s.temp_dir,
        )
        watchdog_every = self.notifier.watchdog_interval or math.inf
        self._serve_metrics()
        try:
            self._housekeeping()
            self._status = self._describe()
            self.notifier.ready(self._status)
            next_housekeeping = time.monotonic() + self.reclaim_interval
            next_watchdog = time.monotonic()
            while not self.stopping.is_set():
                self.metrics.tick()
                self._reap()
                now = time.monotonic()
                if now >= next_watchdog:
                    self.notifier.watchdog()
                    next_watchdog = now + watchdog_every
                if now >= next_housekeeping:
                    self._housekeeping()
                    next_housekeeping = now + self.reclaim_interval
                try:
                    self._refresh_queue()
                    self._claim_while_free()
                    if self.exit_when_idle and not self._running and not self._work_ahead():
                        self.log.info("Nothing running and nothing due: exiting (--exit-when-idle)")
                        break
                    delay = s.poll_interval * (1 - random.uniform(0, POLL_JITTER))
                except Exception as exc:  # noqa: BLE001 - the daemon lives on, and says why
                    bug = not isinstance(exc, DlstoreError)
                    self.log.error("Cannot look for pending downloads: %s", exc, exc_info=bug)
                    delay = max(s.poll_interval, ERROR_BACKOFF_SECONDS)
                self._set_status(self._describe())
                now = time.monotonic()
                self._wait(min(delay, next_watchdog - now, next_housekeeping - now))
        finally:
            self._pipe.poke()  # run() is waiting for the loop to end

    def _serve_metrics(self) -> None:
        """Start the /metrics and /healthz server if metrics_listen asks for one."""
        if self.settings.metrics_listen is None:
            return
        host, port = parse_listen(self.settings.metrics_listen)
        self._metrics_server = MetricsServer(self.metrics, host, port).start()
        bound_host, bound_port = self._metrics_server.address
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.log.info("Metrics on http://%s:%d/metrics, health on /healthz", shown, bound_port)

    def _wait(self, seconds: float) -> None:
        # Watch the database only with a slot free: our own progress writes change it too.
        free = len(self._running) < self.settings.max_concurrent_tasks
        self._wake.wait(max(0.0, seconds), watch=free and not self.stopping.is_set())

    def _claim_while_free(self) -> None:
        while len(self._running) < self.settings.max_concurrent_tasks:
            if self.stopping.is_set() or self._queue.paused:
                return
            mark = self._wake.mark()
            found = self.store.claim(str(self.worker_id), exclude_hosts=self._saturated_hosts())
            if found is None:
                self._wake.seen(mark)  # what was committed before this claim has been looked at
                return
            with self._lock:  # the shutdown takes its list of runners under this lock
                late = self.stopping.is_set()
                if not late:
                    self._start(*found)
            if late:
                self._release_unstarted(found[1])
                return

    def _release_unstarted(self, claim: Claim) -> None:
        """A row claimed as the stop came: straight back to pending (loop thread)."""
        if self.store.release(claim):
            self.log.info("[task %s] Claimed as the daemon stopped: released", claim.task_id)

    def _saturated_hosts(self) -> list[str]:
        """The URL hosts with max_per_host downloads running here (none if no limit)."""
        limit = self.settings.max_per_host
        if limit <= 0:
            return []
        running = Counter(url_host(str(r.runner.task.url)) for r in self._running.values())
        return sorted(host for host, count in running.items() if count >= limit)

    def _start(self, task: DownloadTask, claim: Claim) -> None:
        runner = TaskRunner(
            self.store,
            self.settings,
            task,
            claim,
            logger=self.log,
            observer=self.metrics.claimed(task),
        )
        previous = self._running.get(task.id)
        if previous is not None:
            previous.runner.stop(StopReason.LOST)
        running = _Running(runner, threading.Thread(), previous=previous)
        running.thread = threading.Thread(
            target=self._run_one, args=(running,), name=f"dlstore-task-{task.id[:8]}", daemon=True
        )
        self._running[task.id] = running
        running.thread.start()

    def _run_one(self, running: _Running) -> None:
        """A runner thread's target: whatever ends it, the loop hears of it."""
        try:
            if running.previous is not None:
                running.previous.thread.join()
                running.previous = None
            running.runner.run()
        except BaseException as exc:  # noqa: BLE001 - the row must not be left held
            running.died = exc
        finally:
            running.done.set()
            self._wake.set()
            self._pipe.poke()

    def _reap(self) -> None:
        with self._lock:
            ended = [
                self._running.pop(k) for k, r in list(self._running.items()) if r.done.is_set()
            ]
        for running in ended:
            if not running.runner.settled:
                self._fail_abandoned(running)

    def _fail_abandoned(self, running: _Running) -> None:
        """Fail the row of a runner whose thread ended before its row was settled."""
        error = running.died
        # Only the type: an exception's text may quote what a server sent (the log has it).
        what = "no outcome was recorded" if error is None else type(error).__name__
        message = (
            f"dlstore's worker for this task stopped unexpectedly ({what}); "
            "retry it, and report it if it happens again."
        )
        log = running.runner.log
        log.error("The worker stopped unexpectedly; failing the task", exc_info=error)
        try:
            if not self.store.fail(running.runner.claim, message):
                log.warning("Its row has moved on meanwhile; leaving it alone")
        except Exception as exc:  # noqa: BLE001 - the loop goes on; the lease expires
            log.error("Could not fail the task (its lease will run out): %s", exc)

    def _due_now(self) -> bool:
        due = self.store.next_due()
        return due is not None and (due == "" or due <= now_ts())

    def _work_ahead(self) -> bool:
        """For --exit-when-idle: a pending row is due now and the queue is not paused."""
        return not self._queue.paused and self._due_now()

    def _refresh_queue(self) -> None:
        """Read the pause switch (one primary-key read); log when it changes."""
        state = self.store.queue_state()
        if state.paused != self._queue.paused:
            if state.paused:
                why = f" ({escape_controls(state.reason)})" if state.reason else ""
                self.log.info(
                    "Queue paused since %s%s: running downloads finish, none start",
                    state.since,
                    why,
                )
            else:
                self.log.info("Queue resumed: starting pending downloads again")
        self._queue = state
        self.metrics.paused.set(int(state.paused))

    # --- housekeeping ----------------------------------------------------------------

    def _housekeeping(self) -> None:
        try:
            self._reclaim()
            self._fail_unknown_statuses()
            self._sweep_orphans()
        except Exception as exc:  # noqa: BLE001 - the daemon lives on, and says why
            bug = not isinstance(exc, DlstoreError)
            self.log.error("Housekeeping failed (will try again): %s", exc, exc_info=bug)

    def _reclaim(self) -> None:
        lease = self.settings.lease_seconds
        for task_id in self.store.reclaim_expired(lease):
            self.log.warning(
                "[task %s] Its daemon sent no heartbeat for over %g s: back to pending",
                task_id,
                lease,
            )
        for task in self.store.held_by(self.worker_id.host_prefix):
            holder = WorkerId.parse(task.worker_id)
            if holder is not None and self._holder_is_dead(holder):
                message = f"Its daemon (pid {holder.pid}) is gone; waiting to resume"
                if self.store.reclaim(task, message):
                    self.log.warning(
                        "[task %s] Its daemon (pid %s) is gone: back to pending",
                        task.id,
                        holder.pid,
                    )

    def _holder_is_dead(self, holder: WorkerId) -> bool:
        """Certainly gone: of this host, boot and pid namespace, and its process is not
        running (:func:`~dlstore.workerid.holder_is_gone`); else the lease decides."""
        return holder_is_gone(holder, self.worker_id)

    def _sweep_orphans(self) -> None:
        """What rows that ended while no daemon was at them left behind (:mod:`dlstore.sweep`)."""
        sweep_orphans(self.store, self.settings, self.log)

    def _fail_unknown_statuses(self) -> None:
        for status in self.store.counts():
            if status in KNOWN_STATUSES:
                continue
            shown = repr(str(status)[:40])
            message = (
                f"The status {shown} is not one dlstore knows ({', '.join(KNOWN_STATUSES)}), "
                "so the task cannot run; retry it to queue it again."
            )
            for task in self.store.list(status=status):
                if self.store.fail_unclaimed(task.id, message, from_status=status):
                    self.log.warning("[task %s] Unknown status %s: failed", task.id, shown)
                else:
                    self.log.warning(
                        "[task %s] Unknown status %s: could not fail it", task.id, shown
                    )

    # --- stopping ----------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Drain, then abort what outlives ``shutdown_grace``, then leave. No database call
        here: this is the thread that reads signals (a second one exits at once)."""
        with self._lock:
            running = list(self._running.values())
        self.notifier.stopping(
            f"Stopping: finishing {len(running)} download(s)" if running else "Stopping"
        )
        for item in running:
            item.runner.stop(StopReason.SHUTDOWN)  # no new segment; those in flight finish
        grace = self.settings.shutdown_grace
        late = self._join_runners(running, grace)
        if late:
            self.log.warning(
                "%d download(s) still fetching after shutdown_grace (%g s): aborting them",
                len(late),
                grace,
            )
            for item in late:
                item.runner.abort()
            late = self._join_runners(late, SHUTDOWN_ABORT_SECONDS)
        self._reap_in_background()
        if late:
            self.log.error(
                "%d download(s) did not release their rows in time (%s); they go back to "
                "pending when this daemon restarts, or when their lease runs out",
                len(late),
                ", ".join(item.runner.task.id for item in late),
            )
        self.log.info("Daemon %s stopped", self.worker_id)
        self._wake.close()
        if self._metrics_server is not None:
            self._metrics_server.stop()
        with contextlib.suppress(OSError):
            self.notifier.close()
        self._pipe.close()

    def _join_runners(self, items: list[_Running], seconds: float) -> list[_Running]:
        """Wait up to ``seconds`` for ``items`` to end, acting on signals; those still running."""
        deadline = time.monotonic() + seconds
        while True:
            alive = [item for item in items if not item.done.is_set()]
            left = deadline - time.monotonic()
            if not alive or left <= 0:
                return alive
            self._handle_signals(min(SIGNAL_TICK_SECONDS, left))
            self.notifier.watchdog()

    def _reap_in_background(self) -> None:
        """Fail the rows of runners that died (a database call: on a thread of its own,
        waited for at most REAP_WAIT_SECONDS)."""
        reaper = threading.Thread(target=self._reap, name="dlstore-reap", daemon=True)
        reaper.start()
        deadline = time.monotonic() + REAP_WAIT_SECONDS
        while reaper.is_alive() and time.monotonic() < deadline:
            self._handle_signals(0.05)

    # --- status ------------------------------------------------------------------------

    def _describe(self) -> str:
        if self._queue.paused:
            since = f" (since {self._queue.since})" if self._queue.since else ""
            return f"Paused{since}: {len(self._running)} running"
        if not self._running:
            return "Idle: waiting for pending downloads"
        return f"Downloading {len(self._running)} of at most {self.settings.max_concurrent_tasks}"

    def _set_status(self, text: str) -> None:
        if text != self._status and not self.stopping.is_set():  # STOPPING=1 stays the last
            self._status = text
            self.notifier.status(text)
