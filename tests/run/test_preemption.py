"""Stop signals outside the training loop: raised where the program is, and raised again
when a library's broad ``except`` caught the first raise."""

import os
import signal
import time

import pytest

from gan_jax.run import preemption


def _signal_swallowed_by_a_library(sig):
  try:
    os.kill(os.getpid(), sig)
    time.sleep(1.0)  # the handler runs here, between two bytecodes
  except Exception:  # pylint: disable=broad-except  # what JAX's compilation-cache writer does
    pass


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_swallowed_stop_is_raised_again_by_the_next_check(sig):
  previous = signal.getsignal(sig)
  reached_the_end = False
  with pytest.raises(preemption.Stopped) as info:
    with preemption.stops_at_once():
      _signal_swallowed_by_a_library(sig)
      with pytest.raises(preemption.Stopped):
        preemption.raise_if_stopped()
      reached_the_end = True
  assert info.value.signal_name == signal.Signals(sig).name
  assert reached_the_end  # and leaving the block raised it once more
  assert signal.getsignal(sig) is previous
  preemption.raise_if_stopped()  # nothing pending once the block is left


def test_a_swallowed_stop_keeps_the_training_loop_from_starting():
  with pytest.raises(preemption.Stopped):
    with preemption.stops_at_once():
      _signal_swallowed_by_a_library(signal.SIGTERM)
      with pytest.raises(preemption.Stopped):
        with preemption.STOP.installed():
          pytest.fail("the training loop started after a stop signal")


def test_without_a_signal_nothing_is_raised():
  with preemption.stops_at_once():
    preemption.raise_if_stopped()
    with preemption.STOP.installed() as stop:
      assert not stop.requested()
