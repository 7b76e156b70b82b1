"""Test doubles and fixture makers, shipped so the tests, the demo and the benchmarks share them.

Not used by dlstore at run time: nothing outside this package imports it. Import the
module you need; this package itself imports nothing, so each caller pays only for
what its module needs:

- :mod:`dlstore.testing.hls_server`: a local HTTP/1.1 server for a folder of HLS
  streams, with fault injection (errors, resets, truncation, latency, rate limits).
  Standard library only, so a benchmark that runs it stays small.
- :mod:`dlstore.testing.media`: real test media made with PyAV (a test-pattern video
  with a sine tone, cut into HLS, plain, fMP4, AES-128, byte ranges, master playlists,
  audio and WebVTT subtitles in two languages), ``decode_check`` to decode a result
  completely, and ``stream_tags``/``audio_tones`` to tell its tracks apart.
- :mod:`dlstore.testing.dash_media`: the same sources cut into DASH by FFmpeg's dash muxer
  (SegmentTemplate with and without SegmentTimeline, SegmentList, SegmentBase, two
  representations, two periods), and ``sidx_box`` to make segment index boxes.
- :mod:`dlstore.testing.live`: a live stream for the HLS server, a sliding-window playlist
  over real segments that advances in real time (or by hand), and can end.
- :mod:`dlstore.testing.rust_api`: the Rust API's side of the contract (CONTRACT.md §2):
  its exact SQL statements, written once here, and ``RustApi`` to run them.
"""
