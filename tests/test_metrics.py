"""dlstore.metrics: what each run adds, /metrics parsed as Prometheus text, /healthz."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests
from prometheus_client import generate_latest

from dlstore.config import Settings, load_settings, parse_listen
from dlstore.errors import ConfigError, CorruptSegmentError, HttpError, TransientDownloadError
from dlstore.http import check_status
from dlstore.metrics import DaemonMetrics, MetricsServer, TaskMetrics, retry_cause
from dlstore.models import DownloadTask
from dlstore.outcome import Action
from dlstore.progress import Progress
from dlstore.timeutil import format_ts, utcnow

from .support.metrics import get, parsed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def progress(fetched_bytes: int, segments: int) -> Progress:
    return Progress(segments, 10, fetched_bytes, None, None, None, "", fetched_bytes, segments)


def samples(metrics: DaemonMetrics) -> dict[tuple[str, tuple], float]:
    text = generate_latest(metrics.registry).decode()
    return parsed(text)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics(store, clock) -> DaemonMetrics:
    return DaemonMetrics(store, running=lambda: 2, stale_after=30.0, clock=clock)


def http_error(status: int) -> HttpError:
    response = requests.Response()
    response.status_code, response.reason = status, "Nope"
    with pytest.raises(HttpError) as info:
        check_status(response, "the segment")
    return info.value


def caused(error: Exception, cause: BaseException) -> Exception:
    error.__cause__ = cause
    return error


def test_retry_causes():
    assert retry_cause(http_error(503)) == "http_503"
    assert retry_cause(http_error(429)) == "http_429"
    assert retry_cause(caused(HttpError("slow"), requests.exceptions.ReadTimeout())) == "timeout"
    assert retry_cause(caused(HttpError("x"), requests.exceptions.ConnectionError())) == (
        "connection"
    )
    assert retry_cause(CorruptSegmentError("short")) == "corrupt"
    assert retry_cause(TransientDownloadError("disk full")) == "other"
    assert retry_cause(HttpError("no status")) == "http"


def test_a_run_counts_bytes_segments_retries_duration_and_failures(metrics, clock):
    run = metrics.claimed(_task(attempts=2))
    assert isinstance(run, TaskMetrics)
    for snapshot in (progress(0, 0), progress(1000, 1), progress(800, 1), progress(3000, 3)):
        run.progress(snapshot)  # a lower value (a retried segment's restart) adds nothing
    run.segment_retry(http_error(503))
    run.segment_retry(CorruptSegmentError("short"))
    clock.now += 12.0
    run.settled(Action.REQUEUE, http_error(502))
    other = metrics.claimed(_task(attempts=3))
    other.progress(progress(500, 1))
    other.settled(Action.COMPLETE, None)
    values = samples(metrics)
    assert values[("dlstore_downloaded_bytes_total", ())] == 3500
    assert values[("dlstore_segments_fetched_total", ())] == 4
    assert values[("dlstore_segment_retries_total", (("cause", "http_503"),))] == 1
    assert values[("dlstore_segment_retries_total", (("cause", "corrupt"),))] == 1
    assert values[("dlstore_task_failures_total", (("kind", "HttpError"),))] == 1
    assert values[("dlstore_task_duration_seconds_count", (("outcome", "requeue"),))] == 1
    assert values[("dlstore_task_duration_seconds_sum", (("outcome", "requeue"),))] == 12.0
    assert values[("dlstore_task_duration_seconds_count", (("outcome", "complete"),))] == 1
    assert values[("dlstore_downloads_running", ())] == 2
    assert values[("dlstore_claim_latency_seconds_count", ())] == 0  # no first claims


def test_claim_latency_of_first_claims_only(metrics):
    metrics.claimed(_task(attempts=1, created_at=format_ts(utcnow())))
    metrics.claimed(_task(attempts=1, created_at="not a time"))
    metrics.claimed(_task(attempts=1, created_at=1736762400))  # type: ignore[arg-type]
    metrics.claimed(_task(attempts=4, created_at="2020-01-01T00:00:00Z"))
    values = samples(metrics)
    assert values[("dlstore_claim_latency_seconds_count", ())] == 1
    assert 0 <= values[("dlstore_claim_latency_seconds_sum", ())] < 5


def test_tasks_by_status_come_from_the_database_cached(metrics, store, clock):
    store.create(name="a", url="https://e/a.m3u8")
    assert samples(metrics)[("dlstore_tasks", (("status", "pending"),))] == 1
    store.create(name="b", url="https://e/b.m3u8")
    assert samples(metrics)[("dlstore_tasks", (("status", "pending"),))] == 1  # cached
    clock.now += 6
    assert samples(metrics)[("dlstore_tasks", (("status", "pending"),))] == 2


def test_health_needs_a_recent_tick_and_the_database(metrics, clock, store, migrated_url):
    assert metrics.health() == (True, "ok")
    clock.now += 31
    healthy, why = metrics.health()
    assert not healthy and "has not run for 31 s" in why
    metrics.tick()
    assert metrics.health()[0]
    if migrated_url.startswith("postgresql"):
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE download_tasks RENAME TO gone")
    else:
        os.rename(migrated_url, migrated_url + ".moved")
    healthy, why = metrics.health()
    assert not healthy and ("gone" in why or "dlstore db upgrade" in why), why


@pytest.fixture
def server(metrics) -> Iterator[str]:
    served = MetricsServer(metrics, "127.0.0.1", 0).start()
    host, port = served.address
    yield f"http://{host}:{port}"
    served.stop()


def test_the_server_answers_metrics_healthz_and_404(server, metrics, clock):
    status, text = get(server + "/metrics")
    assert status == 200 and ("dlstore_downloads_running", ()) in parsed(text)
    assert get(server + "/")[0] == 200
    assert get(server + "/healthz") == (200, "ok\n")
    clock.now += 60
    status, text = get(server + "/healthz")
    assert status == 503 and "has not run" in text
    assert get(server + "/nope")[0] == 404


def test_a_busy_port_is_a_dlstore_error(server, metrics):
    port = int(server.rsplit(":", 1)[1])
    with pytest.raises(Exception, match="Cannot serve metrics on 127.0.0.1"):
        MetricsServer(metrics, "127.0.0.1", port)


@pytest.mark.parametrize(
    ("text", "address"),
    [("127.0.0.1:9100", ("127.0.0.1", 9100)), ("[::1]:0", ("::1", 0)), ("h:1", ("h", 1))],
)
def test_parse_listen(text, address):
    assert parse_listen(text) == address


@pytest.mark.parametrize("text", ["9100", ":9100", "host:", "host:http", "host:70000"])
def test_bad_metrics_listen_names_the_key(tmp_path, text):
    with pytest.raises(ConfigError, match="metrics_listen"):
        parse_listen(text)
    path = tmp_path / "downloader.yaml"
    path.write_text(f"downloader:\n  metrics_listen: '{text}'\n")
    with pytest.raises(ConfigError, match="metrics_listen"):
        load_settings(path, environ={})
    with pytest.raises(ConfigError, match="metrics_listen"):
        Settings().replace(metrics_listen=text)


def _task(attempts: int, created_at: str = "2025-01-13T10:00:00Z") -> DownloadTask:
    return DownloadTask(
        id="t", name="t", url="https://e/t.m3u8", status="downloading",
        created_at=created_at, attempts=attempts,
    )  # fmt: skip
