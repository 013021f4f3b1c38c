"""Every video read and write of aejax: a seeking frame reader, a sampled stream, a camera and a
streaming writer (atomic). The folder scan (`scan_videos`, `VideoInfo`) is `aejax.data.scan`.

Reading uses PyAV (`av` on PyPI, imported on first use). `VideoReader.read` seeks: a first read
demuxes the file once (packets only, no decoding) into a presentation-order index of frame
timestamps and key frames; each wanted frame is then decoded from the nearest key frame at or
before it, skipping non-reference frames on the way, and reads in increasing order continue the
open decoder. Frame i is the i-th frame in presentation order, the same frame a sequential decode
gives (tests check this bit for bit on H.264 with B-frames across GOP boundaries). Files whose
packets carry no usable timestamps are decoded sequentially instead. An index at or past the real
end of a file (its container's count was wrong) is a `FrameCountError` (a `ValueError`).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import os
import threading
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mpeg", ".mpg", ".mov", ".m4v")
# What `VideoWriter` encodes by default: H.264 (PyAV's libx264, yuv420p) for the containers browsers
# play it from, an OpenCV FourCC for the others.
H264_EXTENSIONS = (".mp4", ".m4v")
FOURCC = {".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".webm": "VP90"}
_OPENCV_CODECS = {"mp4v", "MJPG", "VP90", "XVID"}  # `codec=` values written through OpenCV


class FrameCountError(ValueError):
  """A frame index at or past the real end of a file (its container's frame count was wrong)."""


def _av():
  try:
    import av
  except ImportError:
    raise ImportError("reading videos needs PyAV: pip install av") from None
  av.logging.set_level(av.logging.PANIC)  # damaged files are reported by us, once, per file
  return av


def _check_file(path: Path) -> None:
  if not path.exists():
    raise FileNotFoundError(f"{path}: video file not found")
  if path.is_dir():
    raise ValueError(f"{path}: is a folder, not a video file")
  if path.stat().st_size == 0:
    raise ValueError(f"{path}: empty (zero-byte) video file")


# FFmpeg's stream probe (avformat_find_stream_info) decodes the first frames of a file: ~1.5 ms of
# the ~2 ms it takes to open a 340x256 H.264 clip. Random-access reads need only what the container
# header gives (size, rate, frame count, timestamps): `quick` opens read at most one packet and skip
# decoding it. The decoder learns the pixel format from the first frame it decodes itself, and the
# frames are the same (tests compare them with a full-probe sequential decode).
_QUICK_PROBE = {"probesize": "32", "skip_frame": "all"}


def _open(path: Path, quick: bool = False):
  """(container, video stream) of a file; one-line ValueError naming it when unreadable.

  `quick`: probe the container header only (see `_QUICK_PROBE`); a file whose header does not give
  the frame size is opened again with the full probe.
  """
  _check_file(path)
  av = _av()
  try:
    c = av.open(str(path), options=_QUICK_PROBE if quick else None)
  except av.FFmpegError as e:
    raise ValueError(
      f"{path}: cannot open this video (corrupt or unsupported: {getattr(e, 'strerror', None) or e})"
    ) from None
  if quick and not (c.streams.video and c.streams.video[0].codec_context.width):
    c.close()
    return _open(path)
  if not c.streams.video:
    c.close()
    raise ValueError(f"{path}: no video stream")
  s = c.streams.video[0]
  s.codec_context.thread_count = 1  # parallelism comes from loader workers, not decoder threads
  return c, s


def _rate(s) -> float:
  r = s.average_rate or s.guessed_rate or s.base_rate
  return float(r) if r else 0.0


def _open_capture(path: Path) -> cv2.VideoCapture:
  _check_file(path)
  cap = cv2.VideoCapture(str(path))
  if not cap.isOpened():
    raise ValueError(f"{path}: OpenCV cannot open this video (corrupt or unsupported codec)")
  return cap


def _decode_all(c, s, keep=None):
  """Yields (i, frame or None) for every decoded frame in order; stops early on damaged data."""
  av = _av()
  i = 0
  try:
    for pkt in c.demux(s):
      for fr in s.codec_context.decode(pkt if pkt.size else None):
        yield i, (fr if keep is None or keep(i) else None)
        i += 1
  except av.FFmpegError:
    return  # a truncated or damaged file ends early, like OpenCV's grab loop


_SWS = threading.local()  # one VideoReformatter per thread: a fresh one per frame costs ~4x


def _to_array(fr, format: str = "rgb24") -> np.ndarray:
  """A decoded frame as an [H, W, 3] array: the same values as `fr.to_ndarray(format=format)`."""
  sws = getattr(_SWS, "r", None)
  if sws is None:
    sws = _SWS.r = _av().video.reformatter.VideoReformatter()
  return sws.reformat(fr, format=format).to_ndarray()


def count_frames(path: str | Path) -> int:
  """Decodable frame count, by decoding every frame (the container's count is not trusted)."""
  c, s = _open(Path(path))
  try:
    return sum(1 for _ in _decode_all(c, s, keep=lambda i: False))
  finally:
    c.close()


@dataclasses.dataclass
class _Index:
  """Presentation-order frame timestamps of one stream and where to start decoding each."""

  pts: list[int]  # [n] timestamps, presentation order
  dec: list[int]  # [n] decode number (packet position) of each frame
  start: list[int]  # [n] decode number of the key frame to decode frame i from (-1: file start)
  seek_ts: dict[int, int]  # key frame decode number -> its pts (the timestamp to seek to)
  dnum: dict[int, int]  # packet pts -> decode number
  packets: list | None = dataclasses.field(default=None, repr=False)  # demuxed, decode order

  def without_packets(self) -> _Index:
    """The index alone (picklable; reads then seek and demux the file again)."""
    return dataclasses.replace(self, packets=None)

  @classmethod
  def build(cls, c, s) -> _Index | None:
    """Demuxes every packet (no decoding); None when timestamps cannot place the frames.

    The packets are kept (up to `KEEP_PACKET_BYTES`): reads decode from them instead of seeking
    the file and demuxing again.
    """
    packets = [p for p in c.demux(s) if p.size]
    rows = [(p.pts, p.dts, p.is_keyframe, p.is_discard) for p in packets]
    pts = [r[0] for r in rows]
    if not rows or None in pts or len(set(pts)) != len(pts):
      return None
    order = sorted(range(len(rows)), key=pts.__getitem__)
    keys = [d for d, r in enumerate(rows) if r[2]]
    start = []
    for d in order:
      j = bisect.bisect_right(keys, d) - 1
      while j >= 0 and rows[keys[j]][0] > rows[d][0]:  # an open-GOP leading frame: key before
        j -= 1
      start.append(keys[j] if j >= 0 else -1)
    keep = [k for k, d in enumerate(order) if not rows[d][3]]  # discarded packets: never shown
    return cls(
      [pts[order[k]] for k in keep],
      [order[k] for k in keep],
      [start[k] for k in keep],
      {d: rows[d][0] for d in keys},
      {p: d for d, p in enumerate(pts)},
      packets if sum(p.size for p in packets) <= KEEP_PACKET_BYTES else None,
    )


KEEP_PACKET_BYTES = 64 << 20  # a reader keeps the demuxed packets of files up to this size


def _from(packets: list, start: int):
  """Packets `start`, `start + 1`, ... then None (end of stream: drain the decoder)."""
  yield from itertools.islice(packets, start, None)
  yield None


class VideoReader:
  """Random-access frames of one video file as RGB uint8, decoded by PyAV with seeking.

  Args:
    path: the video file (opened at once: a missing or unreadable file is a one-line error).
    num_frames: the frame count when already known (e.g. from `scan_videos`); counted by
      decoding lazily otherwise.
  """

  def __init__(self, path: str | Path, num_frames: int | None = None):
    self.path = Path(path)
    c, s = _open(self.path, quick=True)
    self.fps = _rate(s)
    self.size = (int(s.codec_context.height), int(s.codec_context.width))
    self._container_frames = max(int(s.frames or 0), 0)
    self._c, self._s = c, s
    self._num_frames = num_frames
    self._index: _Index | None | bool = False  # False: not built yet, None: not seekable
    self._demux, self._fed, self._pos = None, 0, 0
    self._coming: set[int] = set()  # pts fed in full since the last seek, not yet output
    self.frames_seen = 0

  @property
  def num_frames(self) -> int:
    """The frame count given at construction, else the decodable count (decodes the file once)."""
    if self._num_frames is None:
      self._num_frames = count_frames(self.path)
    return self._num_frames

  def __len__(self) -> int:
    return self.num_frames

  def __repr__(self) -> str:
    return f"VideoReader({str(self.path)!r})"

  def _reopen(self, quick: bool = True) -> None:
    if self._c is not None:
      self._c.close()
    self._c, self._s = _open(self.path, quick=quick)
    self._demux, self._fed, self._pos = None, 0, 0
    self._coming = set()

  def _ensure_index(self) -> _Index | None:
    if self._index is False:
      if self._c is None:
        self._reopen()
      self._index = _Index.build(self._c, self._s)
      self._demux = None  # the demuxer is at the end: the next read seeks or reopens
    return self._index

  def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Frames at `indices` (any order, repeats allowed): [len(indices), H, W, 3] uint8 RGB.

    Raises:
      FrameCountError: (a ValueError) naming the file when an index is at or past the real end.
      ValueError: naming the file when a frame cannot be decoded (truncated or corrupt file).
    """
    indices = [int(i) for i in np.asarray(indices).reshape(-1)]
    if not indices:
      return np.zeros((0, *self.size, 3), np.uint8)
    if min(indices) < 0:
      raise IndexError(f"{self.path}: negative frame index {min(indices)}")
    wanted = sorted(set(indices))
    av = _av()
    try:
      ix = self._ensure_index()
      got = self._read_seeking(ix, wanted) if ix is not None else None
      if got is None:  # not seekable, or the decoder's timestamps disagree with the index
        self._index = None
        got = self._read_sequential(wanted)
    except av.FFmpegError as e:
      self._demux = None
      raise ValueError(
        f"{self.path}: cannot decode frame {wanted[0]} or later ({getattr(e, 'strerror', None) or e})"
      ) from None
    return np.stack([got[i] for i in indices])

  def _past_end(self, i: int, n: int) -> FrameCountError:
    return FrameCountError(
      f"{self.path}: cannot decode frame {i} (the file has {n} frames: its "
      f"frame count was wrong, or it is truncated)"
    )

  def _seek(self, ix: _Index, key: int) -> None:
    """Positions the input on key frame `key` (a decode number; -1: the file start): the kept
    packets when the index holds them, else the demuxer."""
    if key < 0 or self._c is None:
      self._reopen()
      if key < 0:
        if ix.packets is not None:
          self._demux, self._fed = _from(ix.packets, 0), 0
        return
    if ix.packets is not None:
      self._s.codec_context.flush_buffers()
      self._coming = set()
      self._demux, self._fed = _from(ix.packets, key), key
      return
    self._c.seek(ix.seek_ts[key], stream=self._s, backward=True)
    self._s.codec_context.flush_buffers()
    self._coming = set()
    it = self._c.demux(self._s)
    first = next((p for p in it if p.size), None)
    d = ix.dnum.get(first.pts, -1) if first is not None else -1
    if d < 0 or d > key or not first.is_keyframe:  # landed past it or off the index: start over
      self._reopen()
      return

    def packets():
      yield first
      yield from it

    self._demux, self._fed = packets(), d

  def _read_seeking(self, ix: _Index, wanted: list[int]) -> dict[int, np.ndarray] | None:
    n = len(ix.pts)
    if wanted[-1] >= n:
      raise self._past_end(wanted[-1], n)
    cc = self._s.codec_context if self._s is not None else None
    got: dict[int, np.ndarray] = {}
    todo = {ix.pts[i]: i for i in wanted}
    for k, t in enumerate(wanted):
      if t in got:
        continue
      # After t's packet, the decoder holds t back until later packets arrive (B-frame reordering).
      # When t is the last frame wanted, or the next one starts from a later key frame, those
      # packets are not needed: drain the decoder instead (same frames out, fewer decoded).
      nxt = next((u for u in wanted[k + 1 :] if u not in got), None)
      drain_after = ix.dec[t] if nxt is None or ix.start[nxt] > ix.dec[t] + 1 else None
      key = ix.start[t]
      ahead = self._fed <= ix.dec[t] or ix.pts[t] in self._coming  # fed in full, not out yet
      if not (self._demux is not None and key <= self._fed and ahead):
        self._seek(ix, key)
        cc = self._s.codec_context
        if self._demux is None:
          self._demux, self._fed = self._c.demux(self._s), 0
      packets = self._demux
      if drain_after is not None and self._fed > drain_after:  # t was fed before: drain at once
        packets = iter([None])
      for pkt in packets:
        flush = pkt is None or not pkt.size
        if not flush:
          self._fed += 1
          full = pkt.pts in todo
          cc.skip_frame = "DEFAULT" if full else "NONREF"
          if full:
            self._coming.add(pkt.pts)
        else:
          cc.skip_frame = "DEFAULT"
        frames = cc.decode(None if flush else pkt)
        if not flush and self._fed - 1 == drain_after:
          frames += cc.decode(None)
          flush = True
        for fr in frames:
          self._coming.discard(fr.pts)
          i = todo.pop(fr.pts, None)
          if i is not None:
            got[i] = _to_array(fr)
        if flush:
          self._demux = None  # the decoder is drained: the next read seeks
          break
        if t in got:
          break
      if t not in got:  # the stream ended without it: let a sequential decode decide
        self._demux = None
        return None
    return got

  def _read_sequential(self, wanted: list[int]) -> dict[int, np.ndarray]:
    if self._demux is None or wanted[0] < self._pos:
      self._reopen(quick=False)  # full probe: frames are counted in output order (decoder delay)
      self._demux = _decode_all(self._c, self._s, keep=lambda i: True)
    need, got = set(wanted), {}
    for i, fr in self._demux:
      self._pos = i + 1
      if i in need:
        got[i] = _to_array(fr)
        if len(got) == len(need):
          return got
    self._demux = None
    raise self._past_end(min(need - set(got)), self._pos)

  def __iter__(self) -> Iterator[np.ndarray]:
    for _, frame in self.stream():
      yield frame

  def read_all(self) -> np.ndarray:
    """Every decodable frame: [T, H, W, 3] uint8 RGB."""
    frames = list(self)
    if not frames:
      raise ValueError(f"{self.path}: no decodable frames")
    self._num_frames = len(frames)
    return np.stack(frames)

  def close(self) -> None:
    """Releases the file and decoder (reads reopen it)."""
    if self._c is not None:
      self._c.close()
    self._c, self._s, self._demux = None, None, None
    if isinstance(self._index, _Index):
      self._index = self._index.without_packets()

  def __enter__(self) -> VideoReader:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __getstate__(self):  # picklable for Grain workers: the decoder is reopened on demand
    state = self.__dict__.copy()
    state.update(_c=None, _s=None, _demux=None, _fed=0, _pos=0, _coming=set())
    if isinstance(self._index, _Index):
      state["_index"] = self._index.without_packets()
    return state

  def seek_points(self) -> np.ndarray:
    """Frames a decode can start from (the stream's key frames), in presentation order.

    Reading frame i costs decoding from the last seek point at or before it. [0] when the file
    cannot seek (it is then decoded from the start).
    """
    ix = self._ensure_index()
    if ix is None:
      return np.zeros(1, np.int64)
    return np.asarray([t for t, (a, d) in enumerate(zip(ix.start, ix.dec)) if a == d], np.int64)

  @property
  def container_frames(self) -> int:
    """The frame count the container reports (fast; wrong for some AVI/MPEG files, 0 if unknown)."""
    return self._container_frames

  def stream(
    self, keep=None, max_frames: int = 0, *, format: str = "rgb24"
  ) -> Iterator[tuple[int, np.ndarray]]:
    """`(index, RGB frame)` in file order; frames with `keep(index)` false are not converted.

    Stops at the end of the decodable frames (a truncated file ends early, without an error) or
    after `max_frames` frames (0: all). `self.frames_seen` counts the frames walked so far.
    `format="bgr24"` gives OpenCV's channel order (the same values, without a copy to swap them).
    """
    c, s = _open(self.path)
    self.frames_seen = 0
    try:
      for i, fr in _decode_all(c, s, keep):
        if max_frames and i >= max_frames:
          break
        self.frames_seen = i + 1
        if fr is not None:
          yield i, _to_array(fr, format)
    finally:
      c.close()


def open_video(path: str | Path, fps: float = 0.0) -> VideoReader:
  """A `VideoReader` whose `fps` is `fps` when given (> 0), else the file's.

  Raises a one-line ValueError naming the file when neither gives a usable frame rate.
  """
  reader = VideoReader(path)
  if fps and fps > 0:
    reader.fps = float(fps)
  if not (reader.fps > 0 and np.isfinite(reader.fps)):
    reader.close()
    raise ValueError(f"{path}: the file reports no frame rate; give one explicitly (fps)")
  return reader


def read_frames(path: str | Path, max_frames: int = 0) -> tuple[np.ndarray, float]:
  """Every frame of a video (or the first `max_frames`) as [T, H, W, 3] RGB uint8, and its fps.

  The fps is the file's, or 25 when the file reports none.
  """
  with VideoReader(path) as r:
    frames = [f for _, f in r.stream(max_frames=max_frames)]
    fps = r.fps or 25.0
  if not frames:
    raise ValueError(f"{path}: no decodable frames")
  return np.stack(frames), fps


def iter_frames(path: str | Path, max_frames: int = 0) -> Iterator[np.ndarray]:
  """RGB uint8 frames of a video file, one at a time (memory stays flat in the video's length)."""
  with VideoReader(path) as r:
    for _, f in r.stream(max_frames=max_frames):
      yield f


def camera_frames(index: int, max_frames: int = 0) -> Iterator[np.ndarray]:
  """RGB uint8 frames from camera `index` (OpenCV), until it stops or `max_frames` (0: no limit)."""
  cap = cv2.VideoCapture(int(index))
  if not cap.isOpened():
    raise ValueError(f"camera {index}: OpenCV cannot open it")
  n = 0
  try:
    while not max_frames or n < max_frames:
      ok, f = cap.read()
      if not ok:
        break
      n += 1
      yield cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
  finally:
    cap.release()


class VideoWriter:
  """Streams RGB uint8 frames [H, W, 3] (or grey [H, W]) into a video file, one at a time.

  `.mp4` / `.m4v` files are H.264 by default (PyAV's libx264, yuv420p, `+faststart`: they play in
  every browser, also while loading); other extensions use OpenCV (mp4v for .mov, MJPG for
  .avi/.mkv, VP9 for .webm).
  `codec` overrides: "h264"/"libx264" (any container), an OpenCV FourCC ("mp4v", "MJPG", "VP90",
  "XVID"), or another PyAV encoder name (e.g. "libx265"). `options` go to a PyAV encoder (e.g.
  {"crf": "23", "g": "30", "bf": "3"}; libx264's own defaults otherwise, as a plain
  `ffmpeg -c:v libx264`). 4:2:0 needs even sizes: a frame with an odd height or width is padded
  by repeating its last row / column (`encoded_size`; nothing is cropped). Frames go to a
  temporary file in the same folder, renamed onto `path` by `close()`, so an interrupted run never
  leaves a half-written video under `path`. The size is taken from the first frame unless given
  as `size=(H, W)`.
  """

  def __init__(
    self,
    path: str | Path,
    fps: float = 30.0,
    size: tuple[int, int] | None = None,
    *,
    codec: str | None = None,
    options: dict[str, str] | None = None,
  ):
    self.path = Path(path)
    self.fps = float(fps)
    ext = self.path.suffix.lower()
    if codec is None:
      codec = "libx264" if ext in H264_EXTENSIONS else FOURCC.get(ext)
      if codec is None:
        known = [*H264_EXTENSIONS, *FOURCC]
        raise ValueError(f"{self.path}: cannot write extension {self.path.suffix!r}; use one of {known}")
    codec = "libx264" if codec == "h264" else codec
    self.fourcc = codec if codec in _OPENCV_CODECS else None  # None: PyAV
    self.codec = None if self.fourcc else codec
    self.options = {k: str(v) for k, v in (options or {}).items()}
    self._tmp = self.path.with_name(f".{self.path.stem}.tmp{os.getpid()}{self.path.suffix}")
    self._w = None
    self.size = self.encoded_size = None
    self.frames_written = 0
    if size is not None:
      self._open(tuple(size))

  def _open(self, size: tuple[int, int]) -> None:
    self.path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    if self.codec is not None:
      av = _av()
      web = self.path.suffix.lower() in (*H264_EXTENSIONS, ".mov")  # index first: plays while loading
      self._w = av.open(str(self._tmp), "w", container_options={"movflags": "+faststart"} if web else None)
      s = self._w.add_stream(
        self.codec, rate=Fraction(self.fps).limit_denominator(1001), options=self.options
      )
      h, w = h + h % 2, w + w % 2  # 4:2:0: even sizes (odd ones padded in `write`)
      s.width, s.height, s.pix_fmt = w, h, "yuv420p"
      self._stream = s
    else:
      self._w = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
      if not self._w.isOpened():
        self._w = None
        raise ValueError(f"{self.path}: OpenCV VideoWriter did not open (codec {self.fourcc})")
    self.size, self.encoded_size = tuple(size), (h, w)

  def write(self, frame: np.ndarray) -> None:
    """Appends one uint8 frame ([H, W, 3] RGB or [H, W] grey) of the writer's size."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
      frame = np.repeat(frame[..., None], 3, axis=-1)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
      raise ValueError(f"{self.path}: expected uint8 frames [H, W, 3], got {frame.dtype} {frame.shape}")
    if self._w is None:
      self._open(frame.shape[:2])
    if frame.shape[:2] != self.size:
      raise ValueError(f"{self.path}: frame size {frame.shape[:2]} differs from the video's {self.size}")
    if self.codec is not None:
      ph, pw = self.encoded_size[0] - self.size[0], self.encoded_size[1] - self.size[1]
      if ph or pw:
        frame = np.pad(frame, ((0, ph), (0, pw), (0, 0)), mode="edge")
      vf = _av().VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
      for pkt in self._stream.encode(vf):
        self._w.mux(pkt)
    else:
      self._w.write(np.ascontiguousarray(frame[..., ::-1]))
    self.frames_written += 1

  def _release(self) -> None:
    if self.codec is not None:
      for pkt in self._stream.encode():
        self._w.mux(pkt)
      self._w.close()
    else:
      self._w.release()
    self._w = None

  def close(self) -> Path:
    """Finishes the file and moves it onto `path`; returns `path`."""
    if self._w is None:
      if self._tmp.exists():
        self._tmp.unlink()
      if self.frames_written == 0 and not self.path.exists():
        raise ValueError(f"{self.path}: no frames to write")
      return self.path
    self._release()
    if not self._tmp.is_file() or self._tmp.stat().st_size == 0:
      self._tmp.unlink(missing_ok=True)
      raise ValueError(f"{self.path}: the encoder wrote no data (codec {self.codec or self.fourcc})")
    os.replace(self._tmp, self.path)
    return self.path

  def abort(self) -> None:
    """Drops the temporary file; `path` is left as it was."""
    if self._w is not None:
      try:
        self._release()
      except Exception:  # noqa: BLE001 - the file is dropped anyway
        self._w = None
    self._tmp.unlink(missing_ok=True)

  def __enter__(self) -> VideoWriter:
    return self

  def __exit__(self, exc_type, *exc) -> None:
    if exc_type is None:
      self.close()
    else:
      self.abort()


def write_video(path: str | Path, frames: np.ndarray, fps: float = 30.0, **writer_kwargs) -> Path:
  """Writes RGB uint8 frames [T, H, W, 3] (or [T, H, W] grey) through `VideoWriter`; returns the path.

  `writer_kwargs` (`codec`, `options`) go to `VideoWriter`.
  """
  path = Path(path)
  frames = np.asarray(frames)
  if frames.ndim not in (3, 4) or len(frames) == 0:
    raise ValueError(f"{path}: expected frames [T, H, W, 3] with T > 0, got {frames.shape}")
  if frames.dtype != np.uint8:
    raise ValueError(f"{path}: expected uint8 frames, got {frames.dtype}")
  with VideoWriter(path, fps, **writer_kwargs) as w:
    for f in frames:
      w.write(f)
  return path
