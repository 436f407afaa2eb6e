"""Graceful stops: SIGTERM or SIGINT ends a run at the next chunk boundary.

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
