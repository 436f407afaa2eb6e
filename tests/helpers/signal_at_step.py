"""launch.py, sent a signal by itself right after the training chunk that reaches a step.

  python tests/helpers/signal_at_step.py SIGNAL STEP [launch.py flags ...]

SIGNAL is a name (SIGKILL, SIGTERM, ...). With SIGKILL the process dies at once,
between checkpoints, with no cleanup and no handlers: a crash or ``kill -9`` at
a known step, which a fast toy run would otherwise outrun.
"""

import os
import runpy
import signal
import sys

from gan_jax.run import train

NAME, STEP = sys.argv[1], int(sys.argv[2])
SIGNAL = getattr(signal, NAME)
_train_chunk = train._train_chunk  # pylint: disable=protected-access
_sent = []


def _train_chunk_then_signal(group):
  trained = _train_chunk(group)
  if group.step >= STEP and not _sent:
    _sent.append(group.step)
    print(f"sending {NAME} to this process after step {group.step}", flush=True)
    os.kill(os.getpid(), SIGNAL)
  return trained


train._train_chunk = _train_chunk_then_signal  # pylint: disable=protected-access
sys.path.insert(0, os.getcwd())  # launch.py's folder, as when it runs as a script
sys.argv = ["launch.py"] + sys.argv[3:]
runpy.run_path("launch.py", run_name="__main__")
