"""launch.py, killed with SIGKILL at the last moment of writing one checkpoint.

  python tests/helpers/kill_during_checkpoint.py STEP [launch.py flags ...]

Orbax writes a checkpoint into a temporary directory and renames it into
place as its final act. This process kills itself (SIGKILL: no cleanup, no
handlers) when the checkpoint of step STEP is complete on disk except for that
rename, the latest possible moment of a write.
"""

import os
import runpy
import signal
import sys

from orbax.checkpoint._src.path import async_path

STEP = sys.argv[1]
_rename = async_path.rename


async def _rename_or_die(src, dst):
  if os.path.basename(str(dst)) == STEP:
    print(f"killing the process while committing checkpoint {STEP} ({src})", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
  return await _rename(src, dst)


async_path.rename = _rename_or_die
sys.path.insert(0, os.getcwd())  # launch.py's folder, as when it runs as a script
sys.argv = ["launch.py"] + sys.argv[2:]
runpy.run_path("launch.py", run_name="__main__")
