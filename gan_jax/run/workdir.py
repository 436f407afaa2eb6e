"""One run per workdir: an exclusive lock held for the life of the process.

A run takes ``fcntl.flock`` on ``<workdir>/.lock`` before it reads or writes
anything there, and writes who holds it (process id, host, start time,
command) into that file. The kernel drops the lock when the process ends,
however it ends, so a run killed with ``kill -9`` leaves no stale lock: the
file stays, unlocked, and the next launch takes it. A second launch into a
busy workdir is refused at once, naming the running process.

In a multi-process run only process 0 takes the lock: the processes of one
run share the workdir (only process 0 writes logs and pictures; orbax writes
checkpoints from process 0).

Locks are re-entrant within a process (a sweep holds its workdir while its
replicas train), and advisory: they bind processes that take them, i.e.
every gan_jax run. On file systems without ``flock`` (some network mounts)
the run goes on unlocked, with a warning.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator

from gan_jax.errors import UserError

LOCK_NAME = ".lock"
_HELD: dict[str, int] = {}  # realpath -> how many holds this process has
_FDS: dict[str, int] = {}  # realpath -> the locked descriptor


class WorkdirBusy(UserError):
  """Another process holds the workdir."""


def _holder(path: str) -> str:
  try:
    with open(path) as f:
      info = json.loads(f.read() or "{}")
  except (OSError, ValueError):
    info = {}
  if not info:
    return "another process (which has not yet written its details)"
  return (f"process {info.get('pid')} on host {info.get('host')}, started "
          f"{info.get('started')} ({info.get('command')})")


def acquire(workdir: str) -> None:
  """Take ``workdir``'s lock for this process (re-entrant); raises ``WorkdirBusy``."""
  key = os.path.realpath(workdir)
  if _HELD.get(key):
    _HELD[key] += 1
    return
  path = os.path.join(key, LOCK_NAME)
  try:
    os.makedirs(key, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise UserError(f"The workdir {workdir!r} cannot be written ({e.strerror}: "
                    f"{e.filename or workdir}); pass a --workdir where this user may create "
                    f"files.") from e
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    os.close(fd)
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      raise WorkdirBusy(
          f"The workdir {workdir!r} is in use by another run: {_holder(path)}. Two runs in one "
          f"workdir would write every metric twice and overwrite each other's checkpoints, so "
          f"this launch stops here and the running one is untouched. Wait for it to finish, "
          f"stop it (SIGTERM makes it checkpoint and exit; launch again to resume), or pass "
          f"another --workdir.") from None
    print(f"warning: the workdir {workdir!r} cannot be locked ({e.strerror}); two launches "
          f"into it would not be kept apart.", file=sys.stderr, flush=True)
    _HELD[key] = 1
    return
  info = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
          "command": " ".join(sys.argv)[:300]}
  os.ftruncate(fd, 0)
  os.pwrite(fd, json.dumps(info).encode(), 0)
  _HELD[key], _FDS[key] = 1, fd


def release(workdir: str) -> None:
  """Give up one hold of ``workdir``'s lock; the last one unlocks it."""
  key = os.path.realpath(workdir)
  if not _HELD.get(key):
    return
  _HELD[key] -= 1
  if _HELD[key] == 0:
    del _HELD[key]
    fd = _FDS.pop(key, None)
    if fd is not None:
      os.close(fd)  # closing the descriptor drops the flock


@contextlib.contextmanager
def locked(workdir: str, *, enabled: bool = True) -> Iterator[None]:
  """Hold ``workdir``'s lock inside the block (``enabled=False``: a no-op, for processes > 0)."""
  if not enabled:
    yield
    return
  acquire(workdir)
  try:
    yield
  finally:
    release(workdir)
