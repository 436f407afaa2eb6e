"""Orbax checkpoints of the full GANState.

Orbax writes each checkpoint into a temporary directory and renames it into
place when complete, so an interrupted write never leaves a checkpoint that
``latest_step`` takes as good.

States are saved and restored as host (NumPy) arrays. In a multi-process run
every process calls ``save`` and ``restore`` with the same (replicated) state;
orbax writes the arrays from process 0 only and every process reads them back.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from gan_jax.state import GANState


class Checkpointer:
  """Saves GANStates under ``<workdir>/checkpoints/<step>``.

  Keeps the newest ``keep`` checkpoints plus every one whose step is a multiple
  of ``keep_every`` (0: none beyond the newest).
  """

  def __init__(self, workdir: str, *, keep: int = 2, keep_every: int = 0):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, keep_period=keep_every or None,
                                           create=True, enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, state: GANState) -> int:
    """Write ``state`` (one copy, not replicated) under its step; returns the step."""
    host = jax.tree.map(np.asarray, jax.device_get(state))
    step = int(host.step)
    if step not in self._manager.all_steps():
      self._manager.save(step, args=ocp.args.StandardSave(host))
      self._manager.wait_until_finished()
    return step

  def restore(self, like: GANState, step: int | None = None) -> GANState:
    """The checkpoint at ``step`` (default: latest) as host arrays, shaped like ``like``."""
    step = self.latest_step() if step is None else step
    target = jax.tree.map(np.asarray, jax.device_get(like))  # NumPy leaves: read as NumPy
    return self._manager.restore(step, args=ocp.args.StandardRestore(target))

  def close(self) -> None:
    self._manager.close()


def restore_latest(workdir: str, like: GANState) -> GANState | None:
  """The newest checkpoint in ``workdir``, or None if it has none."""
  ckpt = Checkpointer(workdir)
  try:
    return None if ckpt.latest_step() is None else ckpt.restore(like)
  finally:
    ckpt.close()

