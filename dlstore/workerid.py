"""A daemon's identity in ``download_tasks.worker_id``: ``host:pid:token``.

Built and read only here. The host tells a daemon which rows it may judge by pid
(its own host's); the pid whether their holder still runs; the token, drawn afresh
at each start, an earlier life of the same pid from this one. Another program's id,
or a garbled one, parses to ``None``: such rows are left to lease expiry.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass

#: The largest pid a ``pid_t`` holds; a bigger number is not a process.
MAX_PID = 2**31 - 1

_PID = re.compile(r"[0-9]{1,10}")


@dataclass(frozen=True)
class WorkerId:
    """One daemon process, as it signs the rows it claims."""

    host: str
    pid: int
    token: str

    @classmethod
    def new(cls, host: str | None = None) -> WorkerId:
        """This process, on ``host`` (default: this machine's name), with a fresh token."""
        return cls(host or socket.gethostname(), os.getpid(), secrets.token_hex(4))

    @classmethod
    def parse(cls, text: str | None) -> WorkerId | None:
        """The id in a row's ``worker_id``, or ``None`` if it is not one of ours."""
        if not text:
            return None
        parts = text.rsplit(":", 2)
        if len(parts) != 3 or not _PID.fullmatch(parts[1]) or int(parts[1]) > MAX_PID:
            return None
        host, pid, token = parts
        return cls(host, int(pid), token)

    @property
    def host_prefix(self) -> str:
        """What every worker_id of this host starts with (for ``TaskStore.held_by``)."""
        return f"{self.host}:"

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"
