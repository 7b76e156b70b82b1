"""A daemon's identity in ``download_tasks.worker_id``, and whether its holder is gone.

    host:pid:token@boot/pidns/start
    e.g. vm:4242:9f3c01aa@95284edf6a9544cc85f09133a5f9b69e/4026531836/861204

Built, read and judged only here. ``host`` tells a daemon which rows it may judge
at all (its own host name's); ``token``, drawn afresh at each start, tells an
earlier life of the same pid from this one. After the ``@``: the kernel's boot id
(``/proc/sys/kernel/random/boot_id``, without dashes), the pid namespace's inode
(``/proc/self/ns/pid``) and the process's start time (field 22 of
``/proc/self/stat``, clock ticks since boot); ``-`` for one that cannot be read.

:func:`holder_is_gone` concludes "dead" only when it is certain: the holder has our
host name, our boot id and our pid namespace (containers that share a host name
share the boot id but not the pid namespace, so they never judge each other's
pids), and its pid is not running, or runs a process started at another time (the
pid was reused). Anything else (another host, another boot, another namespace, an
id without the ``@`` part as dlstore wrote before, another program's id, a garbled
one) is left to lease expiry.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
from dataclasses import dataclass

#: The largest pid a ``pid_t`` holds; a bigger number is not a process.
MAX_PID = 2**31 - 1

_PID = re.compile(r"[0-9]{1,10}")
_BOOT = re.compile(r"[0-9a-f]{32}")
_NUMBER = re.compile(r"[0-9]{1,20}")
_UNKNOWN = "-"


@dataclass(frozen=True)
class WorkerId:
    """One daemon process, as it signs the rows it claims."""

    host: str
    pid: int
    token: str
    boot: str | None = None  # the kernel's boot id, 32 hex digits
    pidns: int | None = None  # the pid namespace's inode number
    start: int | None = None  # the process's start time, clock ticks after boot

    @classmethod
    def new(cls, host: str | None = None) -> WorkerId:
        """This process, on ``host`` (default: this machine's name), with a fresh token."""
        pid = os.getpid()
        return cls(
            host or socket.gethostname(),
            pid,
            secrets.token_hex(4),
            boot=boot_id(),
            pidns=pid_namespace(),
            start=process_start(pid),
        )

    @classmethod
    def parse(cls, text: str | None) -> WorkerId | None:
        """The id in a row's ``worker_id``, or ``None`` if it is not one of ours."""
        if not text:
            return None
        parts = text.rsplit(":", 2)
        if len(parts) != 3 or not _PID.fullmatch(parts[1]) or int(parts[1]) > MAX_PID:
            return None
        host, pid, rest = parts
        token, at, where = rest.partition("@")
        if not at:
            return cls(host, int(pid), token)  # as dlstore wrote it before #9
        fields = where.split("/")
        if len(fields) != 3 or not _identity_fields_valid(*fields):
            return None
        boot, pidns, start = (None if f == _UNKNOWN else f for f in fields)
        return cls(
            host,
            int(pid),
            token,
            boot=boot,
            pidns=None if pidns is None else int(pidns),
            start=None if start is None else int(start),
        )

    @property
    def host_prefix(self) -> str:
        """What every worker_id of this host starts with (for ``TaskStore.held_by``)."""
        return f"{self.host}:"

    @property
    def legacy(self) -> bool:
        """An id without boot id, namespace and start time (as dlstore wrote before #9)."""
        return self.boot is None and self.pidns is None and self.start is None

    def __str__(self) -> str:
        base = f"{self.host}:{self.pid}:{self.token}"
        if self.legacy:
            return base
        fields = (self.boot, self.pidns, self.start)
        return base + "@" + "/".join(_UNKNOWN if f is None else str(f) for f in fields)


def _identity_fields_valid(boot: str, pidns: str, start: str) -> bool:
    return (
        (boot == _UNKNOWN or bool(_BOOT.fullmatch(boot)))
        and (pidns == _UNKNOWN or bool(_NUMBER.fullmatch(pidns)))
        and (start == _UNKNOWN or bool(_NUMBER.fullmatch(start)))
    )


# --- this machine, this process ---------------------------------------------------------------


def boot_id() -> str | None:
    """This kernel's boot id (32 hex digits), or None where it cannot be read."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            text = fh.read().strip().replace("-", "").lower()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _BOOT.fullmatch(text) else None


def pid_namespace() -> int | None:
    """The inode number of this process's pid namespace, or None where it cannot be read."""
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return None
    match = re.fullmatch(r"pid:\[([0-9]{1,20})\]", link)
    return int(match.group(1)) if match else None


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name (field 3 onwards), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start(pid: int) -> int | None:
    """When ``pid`` started (field 22 of its stat: clock ticks after boot), or None."""
    fields = _stat_fields(pid) if pid > 0 else None
    if fields is None or len(fields) < 20:
        return None
    with contextlib.suppress(ValueError):
        return int(fields[19])
    return None


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists in this pid namespace and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user
    fields = _stat_fields(pid)
    return fields is None or not fields or fields[0] not in ("Z", "X")


def holder_is_gone(holder: WorkerId, me: WorkerId) -> bool:
    """Whether ``holder`` is certainly not running, as ``me`` can tell (module doc)."""
    if holder.host != me.host or holder.boot is None or holder.pidns is None:
        return False
    if holder.boot != me.boot or holder.pidns != me.pidns:
        return False  # another machine of the same name, another boot, another container
    if holder.pid == me.pid:
        return holder.token != me.token  # that pid is us now: the holder was an earlier life
    if not pid_alive(holder.pid):
        return True
    started = process_start(holder.pid)
    return holder.start is not None and started is not None and started != holder.start
