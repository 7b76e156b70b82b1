"""dlstore's exceptions.

Every error dlstore raises on purpose is a :class:`DlstoreError`. Its message is
written for the person who reads it: it lands verbatim in a failed row's
``error_message`` and on the CLI's stderr, so it says what went wrong and what to
do about it. Third-party errors are wrapped once, where they enter dlstore
(``raise NetworkError(...) from exc``).

    DlstoreError
    ├── ConfigError              bad config file, env var or flag
    ├── DatabaseError            unreachable or invalid database URL
    │   └── NotMigratedError     download_tasks missing or behind: run `dlstore db upgrade`
    ├── TaskNotFoundError        no row with that id
    ├── InvalidTransitionError   e.g. retry of a completed row
    ├── UnsafePathError          a name or folder that would escape the output root
    ├── CancelledError           the download was cancelled (not a failure)
    └── DownloadError            anything that stops a download
        ├── TransientDownloadError   worth retrying later (network, 5xx, timeouts)
        │   └── SlowServerError      a response that stalled or overran its deadline
        ├── PlaylistError            not a playlist, malformed, empty, too large
        ├── QualityNotFoundError     the asked-for quality is not offered
        ├── UnsupportedStreamError   SAMPLE-AES, DRM, live streams, unknown schemes
        ├── SegmentError             a segment that could not be fetched or is corrupt
        │   └── SegmentTooLargeError a segment over max_segment_bytes
        └── RemuxError               the fetched media could not be joined into a file

``transient`` tells the daemon whether an automatic retry may help.
"""

from __future__ import annotations


class DlstoreError(Exception):
    """Something went wrong in dlstore."""

    transient: bool = False

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(DlstoreError):
    """The configuration is invalid."""


class DatabaseError(DlstoreError):
    """The database could not be used."""


class NotMigratedError(DatabaseError):
    """The database has no up-to-date download_tasks table: run `dlstore db upgrade`."""


class TaskNotFoundError(DlstoreError):
    """No download task has that id."""


class InvalidTransitionError(DlstoreError):
    """The task is not in a state that allows this."""


class UnsafePathError(DlstoreError):
    """That name or folder would put the file outside the output folder."""


class CancelledError(DlstoreError):
    """The download was cancelled."""


class DownloadError(DlstoreError):
    """The download failed."""


class TransientDownloadError(DownloadError):
    """The server or the network failed for now; trying again later may work."""

    transient = True


class SlowServerError(TransientDownloadError):
    """The server sent too slowly (it stalled, or overran a deadline); try again later."""


class PlaylistError(DownloadError):
    """The URL did not return a usable HLS playlist."""


class QualityNotFoundError(DownloadError):
    """The stream does not offer the requested quality."""


class UnsupportedStreamError(DownloadError):
    """This kind of stream is not supported."""


class SegmentError(DownloadError):
    """A segment of the video could not be downloaded."""


class RemuxError(DownloadError):
    """The downloaded segments could not be joined into a video file."""


class SegmentTooLargeError(SegmentError):
    """A segment is larger than max_segment_bytes."""
