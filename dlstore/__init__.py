"""dlstore: the download queue and HLS downloader behind the download_tasks table."""

__version__ = "0.1.0"
