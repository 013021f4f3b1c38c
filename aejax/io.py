"""Safe output: atomic file writes, output checks and workdir locks.

- `atomic_path(path)` / `write_text` / `write_json`: write under a temporary name in the same folder,
  then `os.replace`, so an interrupted run leaves the old file or the new one, never half of one.
- `check_output(path, inputs, overwrite)`: an output that is one of the inputs (same resolved path or
  same inode) or that exists already (without `--overwrite`) is a one-line `OutputError`.
- `WorkdirLock`: `workdir/.lock` holds the host and PID of the run using the folder; a second run
  stops at once, a lock left by a dead process on this host is taken over.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path


class OutputError(ValueError):
  """An output that would destroy an input or an existing file, or that cannot be written."""


class WorkdirLocked(ValueError):
  """The workdir is in use by another run (one-line message naming it)."""


# ------------------------------------------------------------------------------- error context


@contextlib.contextmanager
def naming(path):
  """Re-raises a ValueError that does not name `path` with `path: ` in front (None: no-op).

  For work on one user file whose failures come from deeper code that never saw the path (a frame
  too small for a model, say), so that the one-line error still says which file.
  """
  try:
    yield
  except ValueError as e:
    if path is None or str(path) in str(e):
      raise
    raise type(e)(f"{path}: {e}") from None


# ------------------------------------------------------------------------------- output checks


def same_file(a, b) -> bool:
  """True when `a` and `b` name the same file: equal resolved paths, or the same inode."""
  a, b = Path(a).expanduser(), Path(b).expanduser()
  try:
    if a.resolve() == b.resolve():
      return True
  except OSError:
    pass
  try:
    return a.exists() and b.exists() and os.path.samefile(a, b)
  except OSError:
    return False


def check_output(
  path, inputs: Iterable = (), overwrite: bool = False, *, what: str = "output", folder: bool = False
) -> Path | None:
  """Checks that writing `path` destroys nothing; returns it as a Path (None for a None `path`:
  an optional `--out` that was not given).

  Args:
    path: the file or folder a command is about to write.
    inputs: the command's input files or folders (None entries are ignored).
    overwrite: allow replacing an existing `path` (the `--overwrite` flag).
    what: how the message names `path` (e.g. "--out").
    folder: `path` is a folder the command writes into (an existing file there is an error even
      with `overwrite`).

  Raises:
    OutputError: `path` is one of `inputs`, is an existing file or non-empty folder while
      `overwrite` is false, a parent of it is a file, or (`folder`) it is a file.
  """
  if path is None or path == "":
    return None
  path = Path(path).expanduser()
  for inp in inputs:
    if inp is None or inp == "":
      continue
    if same_file(path, inp):
      raise OutputError(f"{path}: the {what} is also an input ({inp}); write it somewhere else")
  if folder and path.exists() and not path.is_dir():
    raise OutputError(f"{path}: the {what} is a file, not a folder; pass a folder")
  if path.exists() and not overwrite:
    if path.is_dir() and not any(path.iterdir()):
      return path  # an empty folder holds nothing to lose
    kind = "folder" if path.is_dir() else "file"
    raise OutputError(f"{path}: the {what} {kind} already exists; pass --overwrite to replace it")
  _check_parents(path, "{parent}: is a file, so {path} cannot be written under it")
  return path


def check_workdir(workdir) -> Path:
  """Raises a one-line OutputError when `workdir` (or a parent of it) is a file; returns a Path."""
  workdir = Path(workdir).expanduser()
  if workdir.exists() and not workdir.is_dir():
    raise OutputError(f"{workdir}: the workdir is a file, not a folder; pass another --workdir")
  _check_parents(workdir, "{parent}: is a file, so the workdir {path} cannot be created")
  return workdir


def _check_parents(path: Path, message: str) -> None:
  """Raises OutputError(`message` formatted with parent and path) when the nearest existing parent
  of `path` is a file."""
  for parent in path.parents:
    if parent.exists():
      if not parent.is_dir():
        raise OutputError(message.format(parent=parent, path=path))
      return


# ------------------------------------------------------------------------------- atomic writes


def temp_name(path) -> Path:
  """A hidden temporary name beside `path` that keeps its suffix (writers infer formats from it)."""
  path = Path(path)
  return path.with_name(f".{path.stem}.tmp{os.getpid()}{''.join(path.suffixes[-1:])}")


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path beside `path`; on success it replaces `path`, on error it is removed.

  Example: `with atomic_path(out) as tmp: cv2.imwrite(str(tmp), im)`.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = temp_name(path)
  try:
    yield tmp
    if not tmp.exists():
      raise OutputError(f"{path}: nothing was written")
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      tmp.unlink()
    raise


def write_bytes(path, data: bytes) -> Path:
  """Writes `data` to `path` atomically (flushed to disk before the rename); returns the path."""
  path = Path(path)
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
  return path


def write_text(path, text: str) -> Path:
  """Writes `text` (UTF-8) to `path` atomically; returns the path."""
  return write_bytes(path, text.encode("utf-8"))


def write_json(path, obj, **kw) -> Path:
  """Writes `obj` as JSON (indent 2 unless `kw` says otherwise) to `path` atomically."""
  kw.setdefault("indent", 2)
  return write_text(path, json.dumps(obj, **kw))


def clock(seconds: float) -> str:
  """A duration as H:MM:SS (the ETA of progress lines)."""
  m, s = divmod(int(seconds), 60)
  return f"{m // 60}:{m % 60:02d}:{s:02d}"


def describe_os_error(e: BaseException, path=None) -> str:
  """`'<path>: <reason>'` for an OSError (no space, read-only, ...) in one line."""
  where = getattr(e, "filename", None) or path or "?"
  if isinstance(e, OSError) and e.errno == errno.ENOSPC:
    reason = "no space left on device"
  elif isinstance(e, OSError) and e.strerror:
    reason = e.strerror[0].lower() + e.strerror[1:]
  else:
    reason = first_line(e)
  return f"{where}: {reason}"


def first_line(e: BaseException, limit: int = 160) -> str:
  """The first line of an exception's message (or its type name), at most `limit` characters."""
  text = str(e).strip().splitlines()[0].strip() if str(e).strip() else type(e).__name__
  return text if len(text) <= limit else text[: limit - 3] + "..."


def is_no_space(e: BaseException) -> bool:
  """True for an out-of-space error, also when wrapped by TensorStore or Orbax."""
  if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
    return True
  return any(s in str(e) for s in ("RESOURCE_EXHAUSTED", "No space left", "Disk quota", "ENOSPC"))


def is_disk_error(e: BaseException) -> bool:
  """True for an out-of-space / quota / I/O error, also when wrapped by TensorStore or Orbax."""
  if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
    return True
  text = str(e)
  return any(
    s in text
    for s in (
      "RESOURCE_EXHAUSTED",
      "No space left",
      "Disk quota",
      "ENOSPC",
      "Read-only file system",
      "Input/output error",
    )
  )


# ------------------------------------------------------------------------------- workdir lock


def _proc_start(pid: int) -> str | None:
  """The start time (clock ticks since boot) of process `pid` from /proc, or None."""
  try:
    stat = Path(f"/proc/{pid}/stat").read_text()
  except OSError:
    return None
  fields = stat.rsplit(")", 1)[-1].split()
  return fields[19] if len(fields) > 19 else None


def _alive(pid: int, start: str | None) -> bool:
  """True when process `pid` runs (and, where /proc tells, is the one that started at `start`)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  try:
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    if state in ("Z", "X"):  # a zombie holds no files
      return False
  except OSError:
    pass
  now = _proc_start(pid)
  return not (start and now and start != now)  # the PID was reused by another process


class WorkdirLock:
  """`workdir/.lock` with this run's host and PID while a run uses `workdir` (a context manager).

  `acquire()` creates the file atomically; if another live process holds it, it raises a one-line
  `WorkdirLocked` naming that process. A lock from a dead process on this host (or from this very
  process) is stale and taken over. A lock from another host is never broken: remove it by hand.
  """

  NAME = ".lock"

  def __init__(self, workdir):
    self.workdir = Path(workdir)
    self.path = self.workdir / self.NAME
    self.held = False

  def _info(self) -> dict:
    pid = os.getpid()
    return {
      "host": socket.gethostname(),
      "pid": pid,
      "start": _proc_start(pid),
      "since": time.strftime("%Y-%m-%d %H:%M:%S"),
      "command": " ".join(sys.argv)[:300],
    }

  def read(self) -> dict | None:
    """The holder's record (`host`, `pid`, `since`, `command`), {} if unreadable, None if absent."""
    try:
      return json.loads(self.path.read_text())
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      return {}

  def _stale(self, info: dict) -> bool:
    if not info:  # empty or half-written: the writer died between create and write
      try:
        return time.time() - self.path.stat().st_mtime > 5
      except FileNotFoundError:
        return True
    if info.get("host") != socket.gethostname():
      return False
    pid = int(info.get("pid", -1))
    return pid == os.getpid() or pid <= 0 or not _alive(pid, info.get("start"))

  def acquire(self) -> WorkdirLock:
    """Takes the lock (see the class docstring); returns self."""
    check_workdir(self.workdir)
    self.workdir.mkdir(parents=True, exist_ok=True)
    mine = json.dumps(self._info())
    tmp = self.workdir / f".lock.tmp{os.getpid()}"
    try:
      tmp.write_text(mine)
    except OSError as e:
      with contextlib.suppress(OSError):
        tmp.unlink()
      raise OutputError(f"{describe_os_error(e, self.path)} (taking the workdir lock)") from None
    try:
      for _ in range(3):
        try:
          os.link(tmp, self.path)  # atomic: fails if the lock exists
          self.held = True
          return self
        except FileExistsError:
          pass
        info = self.read()
        if info is None:
          continue  # released meanwhile: try again
        if not self._stale(info):
          raise WorkdirLocked(self._message(info))
        os.replace(tmp, self.path)  # take over the stale lock
        if self.read() == json.loads(mine):  # nobody else took it over at the same moment
          self.held = True
          return self
        tmp.write_text(mine)
      raise WorkdirLocked(self._message(self.read() or {}))
    finally:
      with contextlib.suppress(OSError):
        tmp.unlink()

  def check(self) -> None:
    """Raises WorkdirLocked if another live process holds the lock (takes nothing)."""
    info = self.read()
    if info is not None and not self._stale(info):
      raise WorkdirLocked(self._message(info))

  def _message(self, info: dict) -> str:
    who = (
      f"process {info.get('pid', '?')} on {info.get('host', '?')} (since {info.get('since', '?')})"
      if info
      else "another process"
    )
    return (
      f"{self.workdir}: in use by {who}; wait for it to finish, use another --workdir, or "
      f"delete {self.path} if that process is gone"
    )

  def release(self) -> None:
    """Removes the lock if this process holds it."""
    if not self.held:
      return
    self.held = False
    info = self.read()
    if info and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
      with contextlib.suppress(OSError):
        self.path.unlink()

  def __enter__(self) -> WorkdirLock:
    return self.acquire()

  def __exit__(self, *exc) -> bool:
    self.release()
    return False
