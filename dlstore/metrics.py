"""Prometheus metrics and a health check for ``dlstore daemon --metrics-listen HOST:PORT``.

    /metrics (and /)   Prometheus text, from a registry of this daemon's own
    /healthz           200 "ok" while the loop ticked lately and the database answers,
                       503 with the reason otherwise

    dlstore_tasks{status}                    rows per status, from the database (cached
                                             TASK_COUNTS_TTL_SECONDS; every daemon reports it)
    dlstore_downloads_running                downloads this daemon runs now
    dlstore_queue_paused                     1 while `dlstore pause` holds the queue
    dlstore_downloaded_bytes_total           bytes received for downloads (retries included)
    dlstore_segments_fetched_total           segment files fetched and put in place
    dlstore_segment_retries_total{cause}     segment requests tried again: timeout, connection,
                                             http_<status>, corrupt, other
    dlstore_task_duration_seconds{outcome}   claim → end of the attempt; outcome: complete,
                                             fail, requeue, release, clean_up
    dlstore_claim_latency_seconds            created_at → first claim (queueing included)
    dlstore_task_failures_total{kind}        attempts that ended in an error (failed, or
                                             requeued to retry later), by error class

The counters come from what each run already reports (:class:`~dlstore.progress.Progress`
snapshots, the retry hook, the decision at the end) through a :class:`TaskMetrics` per
run; nothing here touches the engine. The server is wsgiref's, one thread per request.
"""

from __future__ import annotations

import logging
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dlstore.errors import CorruptSegmentError, DatabaseError, DlstoreError, HttpError
from dlstore.models import DownloadTask
from dlstore.outcome import Action
from dlstore.progress import Progress
from dlstore.store import TaskStore
from dlstore.timeutil import parse_ts, utcnow
from dlstore.worker import RunObserver

#: How long the per-status row counts are reused before the database is asked again.
TASK_COUNTS_TTL_SECONDS = 5.0
#: /healthz fails when the loop has not ticked for this long (or 3 poll intervals).
LOOP_STALE_SECONDS = 30.0
CLAIM_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)
_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")

log = logging.getLogger(__name__)


def retry_cause(error: BaseException) -> str:
    """A segment retry's cause, as a label value from a small, fixed set."""
    if isinstance(error, CorruptSegmentError):
        return "corrupt"
    if not isinstance(error, HttpError):
        return "other"  # e.g. a full disk
    if isinstance(error.__cause__, requests.exceptions.Timeout):
        return "timeout"
    if error.__cause__ is not None:
        return "connection"  # requests' connection errors, sockets
    status = _HTTP_STATUS.search(str(error))  # check_status: "… (HTTP 503 …)"
    return f"http_{status.group(1)}" if status else "http"


class DaemonMetrics:
    """One daemon's metrics, in a registry of its own, and its health."""

    def __init__(
        self,
        store: TaskStore,
        *,
        running: Callable[[], int],
        stale_after: float = LOOP_STALE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.stale_after = stale_after
        self._clock = clock
        self._last_tick = clock()
        # fmt: off
        self.registry = registry = CollectorRegistry()
        registry.register(_TaskCounts(store, clock))
        running_now = Gauge("dlstore_downloads_running", "Downloads this daemon runs now.",
                            registry=registry)
        running_now.set_function(running)
        self.paused = Gauge("dlstore_queue_paused", "1 while dlstore pause holds the queue.",
                            registry=registry)
        self.bytes = Counter("dlstore_downloaded_bytes",
                             "Bytes received for downloads, retries included.", registry=registry)
        self.segments = Counter("dlstore_segments_fetched",
                                "Segment files fetched and put in place.", registry=registry)
        self.retries = Counter("dlstore_segment_retries",
                               "Segment requests tried again, by cause.", ["cause"],
                               registry=registry)
        self.duration = Histogram("dlstore_task_duration_seconds",
                                  "Claim to the end of an attempt, by outcome.", ["outcome"],
                                  buckets=DURATION_BUCKETS, registry=registry)
        self.claim_latency = Histogram("dlstore_claim_latency_seconds",
                                       "A row's created_at to its first claim.",
                                       buckets=CLAIM_LATENCY_BUCKETS, registry=registry)
        self.failures = Counter("dlstore_task_failures",
                                "Attempts that ended in an error, by error class.", ["kind"],
                                registry=registry)
        # fmt: on

    def tick(self) -> None:
        """The loop is alive (called once per turn)."""
        self._last_tick = self._clock()

    def claimed(self, task: DownloadTask) -> TaskMetrics:
        """A row was just claimed: its claim latency (first claims only) and its run's metrics."""
        latency = _first_claim_latency(task)
        if latency is not None:
            self.claim_latency.observe(latency)
        return TaskMetrics(self, self._clock)

    def health(self) -> tuple[bool, str]:
        """(healthy, why): the loop ticked within ``stale_after`` and the database answers."""
        quiet = self._clock() - self._last_tick
        if quiet > self.stale_after:
            return False, f"The daemon's loop has not run for {quiet:.0f} s."
        try:
            self.store.ping()
        except DlstoreError as exc:
            return False, str(exc)
        return True, "ok"


def _first_claim_latency(task: DownloadTask) -> float | None:
    """Seconds from ``created_at`` to now for a row claimed the first time, else None."""
    if task.attempts != 1 or not isinstance(task.created_at, str):
        return None
    try:
        created = parse_ts(task.created_at)
    except ValueError:
        return None  # the API may write anything
    if created is None:
        return None
    latency = (utcnow() - created).total_seconds()
    return latency if latency >= 0 else None


class TaskMetrics(RunObserver):
    """What one run adds to the daemon's metrics."""

    def __init__(self, metrics: DaemonMetrics, clock: Callable[[], float]) -> None:
        self._metrics = metrics
        self._clock = clock
        self._started = clock()
        self._bytes = 0
        self._segments = 0
        self._lock = threading.Lock()  # segment_retry comes from fetch threads

    def progress(self, progress: Progress) -> None:
        with self._lock:
            more_bytes = max(0, progress.fetched_bytes - self._bytes)
            more_segments = max(0, progress.segments_fetched - self._segments)
            self._bytes += more_bytes
            self._segments += more_segments
        self._metrics.bytes.inc(more_bytes)
        self._metrics.segments.inc(more_segments)

    def segment_retry(self, error: Exception) -> None:
        self._metrics.retries.labels(cause=retry_cause(error)).inc()

    def settled(self, action: Action, error: BaseException | None) -> None:
        seconds = self._clock() - self._started
        self._metrics.duration.labels(outcome=action.value).observe(seconds)
        if error is not None and action in (Action.FAIL, Action.REQUEUE):
            self._metrics.failures.labels(kind=type(error).__name__).inc()


class _TaskCounts(Collector):
    """``dlstore_tasks{status}`` from the database, asked at most every TTL seconds."""

    def __init__(self, store: TaskStore, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, int]] | None = None

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("dlstore_tasks", "Rows of download_tasks by status.")]

    def collect(self) -> Iterator[Metric]:
        counts = self._counts()
        if counts is None:
            return
        family = GaugeMetricFamily(
            "dlstore_tasks", "Rows of download_tasks by status.", labels=["status"]
        )
        for status, count in sorted(counts.items()):
            family.add_metric([str(status)], count)
        yield family

    def _counts(self) -> dict[str, int] | None:
        with self._lock:
            now = self._clock()
            if self._cached is None or now - self._cached[0] >= TASK_COUNTS_TTL_SECONDS:
                try:
                    self._cached = (now, self._store.counts())
                except DatabaseError as exc:
                    log.warning("Metrics: cannot count the tasks: %s", exc)
                    return None
            return self._cached[1]


# --------------------------------------------------------------------------- the server


class MetricsServer:
    """Serves /metrics and /healthz on ``host:port`` (port 0: any free port) in a thread."""

    def __init__(self, metrics: DaemonMetrics, host: str, port: int) -> None:
        self._metrics = metrics
        self._prometheus = make_wsgi_app(metrics.registry)
        server_class = _Server6 if ":" in host else _Server
        try:
            self._httpd = make_server(host, port, self._app, server_class, _QuietHandler)
        except OSError as exc:
            raise DlstoreError(f"Cannot serve metrics on {host}:{port}: {exc.strerror}.") from exc
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="dlstore-metrics", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path in ("/", "/metrics"):
            return self._prometheus(environ, start_response)
        if path == "/healthz":
            healthy, why = self._metrics.health()
            status = "200 OK" if healthy else "503 Service Unavailable"
            return _text(start_response, status, why)
        return _text(start_response, "404 Not Found", "Not found: /metrics or /healthz.")


def _text(start_response: Callable[..., Any], status: str, text: str) -> list[bytes]:
    body = f"{' '.join(text.split())}\n".encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response(status, headers)
    return [body]


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer's own looks its name up in DNS (getfqdn), which can take seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]
        self.setup_environ()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass
