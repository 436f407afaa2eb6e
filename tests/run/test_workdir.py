"""The workdir lock: one run per workdir, released however the holder ends."""

import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT

from gan_jax.run import workdir as workdir_lib

HOLD = ("import sys, time; from gan_jax.run import workdir; workdir.acquire(sys.argv[1]); "
        "print('held', flush=True); time.sleep(600)")


def hold(path):
  proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=ROOT,
                          stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "held"
  return proc


def test_a_held_workdir_is_refused_naming_the_holder_and_freed_by_kill_9(tmp_path):
  proc = hold(tmp_path)
  try:
    with pytest.raises(workdir_lib.WorkdirBusy) as e:
      workdir_lib.acquire(str(tmp_path))
    message = str(e.value)
    assert f"process {proc.pid} on host" in message and "another --workdir" in message
    assert "\n" not in message
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  # The kernel released the dead process's lock: no stale lock blocks the next run.
  with workdir_lib.locked(str(tmp_path)):
    with workdir_lib.locked(str(tmp_path)):  # re-entrant within a process
      pass
    assert os.path.realpath(str(tmp_path)) in workdir_lib._HELD  # pylint: disable=protected-access
  assert os.path.realpath(str(tmp_path)) not in workdir_lib._HELD  # pylint: disable=protected-access
  # ... and once released here, another process can take it.
  proc = hold(tmp_path)
  proc.kill()
  proc.wait()


def test_an_unwritable_workdir_is_a_user_error(tmp_path):
  if os.geteuid() == 0:  # root writes anywhere: use a path under a file instead
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = blocker / "run"
  else:
    os.chmod(tmp_path, 0o500)
    target = tmp_path / "run"
  with pytest.raises(workdir_lib.UserError, match="cannot be written"):
    workdir_lib.acquire(str(target))
