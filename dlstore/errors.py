"""dlstore's exceptions.

Every error dlstore raises on purpose is a :class:`DlstoreError`. Its message is
written for the person who reads it: it lands verbatim in a failed row's
``error_message`` and on the CLI's stderr, so it says what went wrong and what to
do about it. Third-party errors are wrapped once, where they enter dlstore
(``raise HttpError(...) from exc``).

    DlstoreError
    ├── ConfigError              bad config file, env var or flag
    ├── DatabaseError            unreachable or invalid database URL
    │   └── NotMigratedError     download_tasks missing or behind: run `dlstore db upgrade`
    ├── TaskNotFoundError        no row with that id
    ├── InvalidTransitionError   e.g. retry of a completed row
    ├── UnsafePathError          a name or folder that would escape the output root
    ├── CancelledError           the download was cancelled (not a failure)
    └── DownloadError            anything that stops a download
        ├── InvalidInputError        a task's options (metadata, flags, batch entry) are invalid
        ├── TransientDownloadError   worth retrying later (network, 5xx, timeouts)
        │   ├── HttpError            an HTTP failure, with the server's Retry-After if it sent one
        │   ├── CorruptSegmentError  a segment's bytes were wrong (truncated, not TS): refetched
        │   ├── SlowServerError      a response that stalled or overran its deadline
        │   ├── DiskFullError        no room to save what was fetched: resumes once there is
        │   └── PartialBusyError     another process is fetching the same file of a work folder
        ├── PlaylistError            not a playlist or DASH manifest, malformed, empty, too large
        ├── QualityNotFoundError     the asked-for quality is not offered
        ├── UnsupportedStreamError   SAMPLE-AES, DRM, live streams, URLs dlstore cannot fetch
        ├── NetworkPolicyError       deny_networks forbids the address a host resolved to
        ├── SegmentError             a segment that could not be fetched or is corrupt
        │   ├── WrongContentError    a fetched file is not the media its playlist says
        │   └── SegmentTooLargeError a segment over max_segment_bytes
        ├── NotWritableError         what was fetched could not be saved (permissions)
        ├── RemuxError               the fetched media could not be joined into a file
        │   └── NestedOpenError      the media asked the demuxer to open another file or URL
        └── WorkFolderError          temp_dir/<task> is a link, or a folder dlstore did not make

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


class InvalidInputError(DownloadError):
    """The task's settings are invalid."""


class TransientDownloadError(DownloadError):
    """The server or the network failed for now; trying again later may work."""

    transient = True


class SlowServerError(TransientDownloadError):
    """The server sent too slowly (it stalled, or overran a deadline); try again later."""


class DiskFullError(TransientDownloadError):
    """The disk is full: free some space; the download resumes where it stopped."""

    # Stops every fetch of the download at once: the others would meet the same full disk.


class PartialBusyError(TransientDownloadError):
    """Another dlstore process is fetching this file into the same work folder."""


class NotWritableError(DownloadError):
    """A fetched file could not be saved: check that the work and output folders are writable."""


class PlaylistError(DownloadError):
    """The URL did not return a usable HLS playlist or DASH manifest."""


class QualityNotFoundError(DownloadError):
    """The stream does not offer the requested quality."""


class UnsupportedStreamError(DownloadError):
    """This kind of stream is not supported."""


class NetworkPolicyError(DownloadError):
    """dlstore's network policy (deny_networks) does not allow connecting to that address."""

    # Raised before any socket connects, on the first request and every redirect hop;
    # not transient: asking again meets the same policy.


class SegmentError(DownloadError):
    """A segment of the video could not be downloaded."""


class WrongContentError(SegmentError):
    """A fetched file is not the kind of media its playlist says; the server did not send video."""


class RemuxError(DownloadError):
    """The downloaded segments could not be joined into a video file."""


class WorkFolderError(DownloadError):
    """The task's work folder is not dlstore's to use; it is left alone."""

    # Raised for a symbolic link, a file, a folder without dlstore's marker or one
    # whose marker names another task: dlstore never writes into or deletes those.


class HttpError(TransientDownloadError):
    """The server or the connection failed for now; may carry the server's Retry-After hint."""

    def __init__(self, message: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CorruptSegmentError(TransientDownloadError):
    """A clear segment whose bytes are not what they should be; retried, then a SegmentError."""


class NestedOpenError(RemuxError):
    """The downloaded media asked to open another file or URL, which dlstore never allows."""


class SegmentTooLargeError(SegmentError):
    """A segment is larger than max_segment_bytes."""
