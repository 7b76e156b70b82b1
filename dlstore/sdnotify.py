"""systemd's readiness protocol (sd_notify): datagrams to ``$NOTIFY_SOCKET``.

    READY=1       start-up finished (Type=notify units wait for it)
    STATUS=…      one line shown by ``systemctl status``
    WATCHDOG=1    proof of life, due every half of ``$WATCHDOG_USEC``
    STOPPING=1    shutdown begun

Without ``$NOTIFY_SOCKET`` every call is a no-op, so the daemon runs the same
under systemd, in a terminal and in tests. Sending never raises: a lost
notification must not stop downloads. The CLI reads the environment and builds
the :class:`Notifier` with :meth:`Notifier.from_environ`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None, watchdog_usec: int | None = None) -> None:
        self.address = address or None
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier:
        """``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC`` (ignored if ``$WATCHDOG_PID`` is not us)."""
        usec: int | None = None
        raw_usec = environ.get("WATCHDOG_USEC", "").strip()
        watchdog_pid = environ.get("WATCHDOG_PID", "").strip()
        if raw_usec.isdigit() and (not watchdog_pid or watchdog_pid == str(os.getpid())):
            usec = int(raw_usec)
        return cls(environ.get("NOTIFY_SOCKET", "").strip() or None, usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half the watchdog timeout), None if none is set."""
        if self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 1_000_000 / 2

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        if self.watchdog_usec is not None:
            self.send("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def send(self, *fields: str) -> bool:
        if self.address is None:
            return False
        message = "\n".join(" ".join(f.splitlines()) for f in fields).encode("utf-8")
        address = self.address
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.sendto(message, address)
        except OSError as exc:
            if not self._warned:
                log.warning("Cannot notify systemd at %s: %s", self.address, exc)
                self._warned = True
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
