"""The daemon's logging: stderr (for journald or a terminal) and the config's ``log_file``.

Every line about a task starts with ``[task <id>]`` (:class:`TaskLog`), so
``journalctl -u dlstore | grep <id>`` tells one download's story. Under journald
(the CLI passes ``journald=True`` when ``$JOURNAL_STREAM`` is set) stderr lines
carry a ``<N>`` syslog priority prefix and no timestamp, which journald adds.

A log line is one line: control characters in a message (a row's name, a
server's text) are written escaped (:func:`~dlstore.redact.escape_controls`), so
no value can forge a line or move a terminal's cursor. URLs are redacted where
the line is written (:func:`~dlstore.redact.redact_url`). A traceback
(``exc_info``, ``stack_info``) is a peer's text too (an exception's message
quotes a URL, a header, a row's value): :class:`SafeFormatter` writes it on the
record's line, its URLs redacted and its line breaks escaped, so a record stays
one line whose ``[task <id>]`` a grep finds with its traceback. urllib3 is held to
ERROR: its warnings quote what a peer sent (``Failed to parse headers
(url=…?token=…): … unparsed data: '…'``), and dlstore reports those failures in
its own words.
"""

from __future__ import annotations

import logging
import logging.handlers
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from dlstore.errors import ConfigError
from dlstore.redact import escape_controls, redact_text

LOGGER_NAME = "dlstore"
FILE_FORMAT = "%(asctime)s %(levelname)s %(message)s"
TERMINAL_FORMAT = "%(asctime)s %(levelname)s %(message)s"
JOURNALD_FORMAT = "<%(syslog_priority)d>%(levelname)s %(message)s"
_SYSLOG_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
#: Libraries whose log lines may quote a peer's bytes, and the level they are held to.
QUIET_LOGGERS = {"urllib3": logging.ERROR}


class _Priority(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.syslog_priority = _SYSLOG_PRIORITY.get(record.levelname, 6)
        return True


class _OneLine(logging.Filter):
    """Escapes the control characters of a record's message (for every handler, caplog too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = escape_controls(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


class SafeFormatter(logging.Formatter):
    """A formatter whose every record is one line: traceback and stack redacted, escaped."""

    def format(self, record: logging.LogRecord) -> str:
        # Another handler's formatter may have cached the raw traceback on the record.
        record.exc_text = None
        return escape_controls(super().format(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        return redact_text(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 (logging's name)
        return redact_text(super().formatStack(stack_info))


def setup(level: str, log_file: Path | None, *, journald: bool = False) -> logging.Logger:
    """Send the ``dlstore`` loggers to stderr and, if set, ``log_file`` (created if missing)."""
    for name, quiet in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(quiet)
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(level.upper())
    logger.propagate = False

    stderr = logging.StreamHandler()
    if journald:
        stderr.setFormatter(SafeFormatter(JOURNALD_FORMAT))
        stderr.addFilter(_Priority())
    else:
        stderr.setFormatter(SafeFormatter(TERMINAL_FORMAT))
    stderr.addFilter(_OneLine())
    logger.addHandler(stderr)

    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            # Reopens the file if logrotate moved it.
            handler = logging.handlers.WatchedFileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"log_file: cannot write the log file {log_file}: {exc}") from exc
        handler.setFormatter(SafeFormatter(FILE_FORMAT))
        handler.addFilter(_OneLine())
        logger.addHandler(handler)
    return logger


class TaskLog(logging.LoggerAdapter):
    """A logger whose every line names its task: ``[task 5f3c…] message``."""

    def __init__(self, logger: logging.Logger, task_id: str) -> None:
        super().__init__(logger, {"task_id": task_id})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return f"[task {self.extra['task_id']}] {msg}", kwargs  # type: ignore[index]
