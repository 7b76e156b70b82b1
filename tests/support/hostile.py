"""Hostile "segment" bodies and a socket count, for the remux and daemon attack tests."""

from __future__ import annotations

import os
from pathlib import Path


def ffconcat_script(secret: Path) -> bytes:
    """A script naming the host's video: guessed, it would be the "downloaded" video."""
    return f"ffconcat version 1.0\nfile '{secret.with_suffix('.mp4').name}'\n".encode()


def sdp_description() -> bytes:
    return (
        b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=video 45678 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    )


def own_udp_sockets(pid: int | str = "self") -> int:
    """UDP sockets process ``pid`` holds (its socket fds found in its net/udp{,6})."""
    inodes: set[str] = set()
    for table in (f"/proc/{pid}/net/udp", f"/proc/{pid}/net/udp6"):
        with open(table) as lines:
            next(lines)
            inodes.update(line.split()[9] for line in lines)
    ours = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # the listing's own fd, gone already
            continue
        if link.startswith("socket:["):
            ours.add(link[8:-1])
    return len(ours & inodes)
