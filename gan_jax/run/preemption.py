"""Graceful stops: SIGTERM or SIGINT ends a run at the next chunk boundary.

Outside the training loop (reading and preparing data, the feature classifier, a
warm-up, ``--mode=eval``) there is nothing to finish: ``stops_at_once`` makes the
signal raise ``Stopped`` where the program is, and the launcher says so in one line.
A library's broad ``except`` can swallow that exception (JAX's compilation-cache
writer does), so the signal is also recorded: long loops outside training call
``raise_if_stopped``, and leaving ``stops_at_once`` or entering the training loop
raises it again.

The first signal only sets a flag, which the training loop reads once per
compiled chunk: it finishes that chunk, writes a checkpoint and returns (exit
status 0). The same signal handlers are then reset to the system default, so
a second SIGINT (or SIGTERM) ends the process at once, losing the iterations
since the last checkpoint.

In a multi-process run every process reads the flags of all processes
(``requested`` is an all-reduce), so all stop after the same chunk.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any

import jax
import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
  """Catches SIGTERM/SIGINT while ``installed`` (nestable; main thread only)."""

  def __init__(self):
    self.signal_name: str | None = None
    self._depth = 0
    self._previous: dict[int, Any] = {}

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    self.signal_name = signal.Signals(signum).name
    for s in SIGNALS:  # the next one stops the process at once
      signal.signal(s, signal.SIG_DFL)
    print(f"\n{self.signal_name} received: finishing the current chunk of iterations, then "
          f"writing a checkpoint and exiting. Send it again (Ctrl-C) to stop at once, losing "
          f"the iterations since the last checkpoint.", file=sys.stderr, flush=True)

  @contextlib.contextmanager
  def installed(self):
    main = threading.current_thread() is threading.main_thread()
    if main and self._depth == 0:
      raise_if_stopped()  # a signal from setting up that a library swallowed
      self.signal_name = None
      self._previous = {s: signal.getsignal(s) for s in SIGNALS}
      for s in SIGNALS:
        signal.signal(s, self._handle)
    self._depth += 1
    try:
      yield self
    finally:
      self._depth -= 1
      if main and self._depth == 0:
        for s, handler in self._previous.items():
          signal.signal(s, handler)

  def requested(self) -> bool:
    """Whether any process got a stop signal (a collective in multi-process runs)."""
    local = self.signal_name is not None
    if jax.process_count() == 1:
      return local
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    return bool(np.max(multihost_utils.process_allgather(np.int32(local))))


STOP = StopRequest()


class Stopped(Exception):
  """SIGTERM or SIGINT outside the training loop."""

  def __init__(self, signal_name: str):
    super().__init__(signal_name)
    self.signal_name = signal_name


_PENDING: list[str] = []  # signals taken by stops_at_once, kept in case the raise was swallowed


def _raise_stopped(signum, frame):  # pylint: disable=unused-argument
  _PENDING.append(signal.Signals(signum).name)
  raise Stopped(_PENDING[-1])


def raise_if_stopped() -> None:
  """Raises ``Stopped`` if a signal came under ``stops_at_once``; for long loops outside
  training, where a library may have caught the exception the signal raised."""
  if _PENDING:
    raise Stopped(_PENDING[0])


@contextlib.contextmanager
def stops_at_once():
  """SIGTERM/SIGINT raise ``Stopped`` in the main thread while this is installed; inside it,
  ``STOP.installed`` (the training loop) takes the signals over and gives them back."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = {s: signal.getsignal(s) for s in SIGNALS}
  _PENDING.clear()
  for s in SIGNALS:
    signal.signal(s, _raise_stopped)
  try:
    yield
    raise_if_stopped()
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
    _PENDING.clear()
