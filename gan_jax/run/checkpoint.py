"""Orbax checkpoints of the full GANState, verified on restore.

Atomic: orbax writes each checkpoint into a temporary directory and renames it
into place when complete, so a write interrupted at any point (even by
``kill -9``) never leaves a directory that ``latest_step`` takes as a
checkpoint; leftover temporary directories are removed when the next run opens
the workdir. That removal is our own few lines, synchronous: orbax's
``cleanup_tmp_directories`` option removes them from a background thread, which
raises "cannot schedule new futures after interpreter shutdown" when the
process ends first (a refused launch, a short ``--mode=eval``; reproduced with
orbax-checkpoint 0.12.8).

Verified: each checkpoint records the SHA-256 of its arrays (and the run's
config) in its metadata. ``restore_latest_valid`` restores the newest
checkpoint whose arrays read back with that digest; a damaged one (truncated,
altered, unreadable) is reported, moved to ``<workdir>/damaged_checkpoints``
and the one before it is used.

States are saved and restored as host (NumPy) arrays. In a multi-process run
every process calls ``save`` and ``restore`` with the same (replicated) state;
orbax writes the arrays from process 0 only and every process reads them back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from gan_jax.errors import UserError
from gan_jax.state import LAYOUT_VERSION, GANState

TMP_MARKER = ".orbax-checkpoint-tmp"  # in the name of a checkpoint being written


class DamagedCheckpoint(Exception):
  """A checkpoint that cannot be read back as it was written."""


class OldLayout(UserError):
  """A checkpoint of an earlier ``GANState`` layout, which this version does not resume."""


def _path_name(path: Any) -> str:
  """"d_params/hidden_0/kernel": a leaf's path whether the tree is the state or its dicts."""
  parts = []
  for k in path:
    for attr in ("name", "key", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
  return "/".join(parts)


def tree_digest(tree: Any) -> str:
  """SHA-256 of a tree's leaves (paths, dtypes, shapes and bytes), in path order.

  The same for a ``GANState`` and the nested dicts orbax reads it back as.
  """
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  h = hashlib.sha256()
  for name, leaf in sorted((_path_name(p), leaf) for p, leaf in leaves):
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{name}:{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def host_copy(tree: Any) -> Any:
  """``tree`` with every leaf a NumPy array in host memory."""
  return jax.tree.map(np.asarray, jax.device_get(tree))


BEST = "checkpoints/best"  # the model selected on validation, kept apart from retention


def _remove_unfinished(directory: str) -> None:
  """Delete the temporary directories of writes that never finished (a crash mid-save)."""
  if jax.process_index() != 0 or not os.path.isdir(directory):
    return
  for name in os.listdir(directory):
    if TMP_MARKER in name:
      shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


@contextlib.contextmanager
def _absl_level(level: int) -> Iterator[None]:
  """absl's (and so orbax's) log messages below ``level`` left out while the block runs."""
  logger = logging.getLogger("absl")
  old = logger.level
  logger.setLevel(level)
  try:
    yield
  finally:
    logger.setLevel(old)


def _write_error(directory: str, step: int, latest: int | None, e: Exception) -> Exception:
  """What to raise for a failed write of ``step``: one paragraph (``UserError``) when the cause
  is the file system (a full disk, a quota, a read-only or vanished folder), else ``e``."""
  cause: BaseException | None = e
  while cause is not None and not isinstance(cause, OSError):
    cause = cause.__cause__ or cause.__context__
  if cause is None:
    return e
  return UserError(
      f"The checkpoint at step {step} could not be written to {directory} "
      f"({cause.strerror or cause}). Nothing half-written is taken as a checkpoint; the newest "
      f"intact one is {f'step {latest}' if latest is not None else 'none'}. Free space or make "
      f"the folder writable (or pass a --workdir on another disk), then launch the same command "
      f"again to resume from it.")


def _manager(directory: str, keep: int, keep_every: int, read_only: bool
             ) -> ocp.CheckpointManager:
  if read_only:  # orbax warns about each writing option and that the directory is read-only
    options = ocp.CheckpointManagerOptions(save_interval_steps=0, create=False, read_only=True,
                                           enable_async_checkpointing=False)
  else:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, keep_period=keep_every or None,
                                           create=True, enable_async_checkpointing=False)
  with _absl_level(logging.ERROR) if read_only else contextlib.nullcontext():
    return ocp.CheckpointManager(directory, options=options,
                                 item_handlers=ocp.StandardCheckpointHandler())


class Checkpointer:
  """Saves GANStates under ``<workdir>/<subdir>/<step>`` (``checkpoints/<step>``).

  Keeps the newest ``keep`` checkpoints plus every one whose step is a multiple
  of ``keep_every`` (0: none beyond the newest). The selected model lives in a
  Checkpointer of its own, ``subdir=BEST, keep=1``.

  ``read_only=True`` (``--mode=eval``, and anything else reading a workdir that a run may
  be training in) creates, removes and moves nothing: not the temporary directory of a
  checkpoint being written, not a damaged checkpoint, not a missing directory.
  """

  def __init__(self, workdir: str, *, keep: int = 2, keep_every: int = 0,
               subdir: str = "checkpoints", read_only: bool = False):
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, subdir)
    self.read_only = read_only
    if not read_only:
      _remove_unfinished(self.directory)
    self._manager = _manager(self.directory, keep, keep_every, read_only)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def reload(self) -> None:
    """Read the directory again (another process may have added or removed checkpoints)."""
    self._manager.reload()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, state: GANState, metadata: dict[str, Any] | None = None) -> int:
    """Write ``state`` (one copy, not replicated) under its step; returns the step.

    ``metadata``: JSON-serialisable facts stored beside the arrays (e.g. the
    config), read back by ``metadata``. A step that already has a checkpoint is
    not written again.
    """
    host = host_copy(state)
    step = int(host.step)
    if step not in self._manager.all_steps():
      custom = {**(metadata or {}), "sha256": tree_digest(host), "layout": LAYOUT_VERSION}
      try:
        with _absl_level(logging.CRITICAL):  # a failed write is reported once, below
          self._manager.save(step, args=ocp.args.StandardSave(host), custom_metadata=custom)
          self._manager.wait_until_finished()
      except Exception as e:  # pylint: disable=broad-except
        _remove_unfinished(self.directory)
        self._manager.reload()
        raise _write_error(self.directory, step, self.latest_step(), e) from e
    return step

  def adopt(self, source: Checkpointer, step: int) -> None:
    """Make ``source``'s checkpoint of ``step`` this directory's only one.

    Process 0 copies it into a temporary directory and renames that into place; the
    copy is read back against its recorded digest before the others are removed, so an
    interrupted or failed copy leaves the previous one in place (``DamagedCheckpoint``).
    """
    if jax.process_index() == 0:
      os.makedirs(self.directory, exist_ok=True)
      tmp = os.path.join(self.directory, f"{step}{TMP_MARKER}-copy")
      shutil.rmtree(tmp, ignore_errors=True)
      shutil.copytree(os.path.join(source.directory, str(step)), tmp)
      final = os.path.join(self.directory, str(step))
      shutil.rmtree(final, ignore_errors=True)
      os.rename(tmp, final)
    self._manager.reload()
    self.restore(None, step, check_layout=False)  # raises DamagedCheckpoint
    if jax.process_index() == 0:
      for name in os.listdir(self.directory):
        if name.isdigit() and int(name) != step:
          shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
    self._manager.reload()

  def metadata(self, step: int) -> dict[str, Any]:
    """What ``save`` stored beside the arrays of ``step``; ``DamagedCheckpoint`` when it cannot
    be read or records no digest of the arrays (every checkpoint gan_jax writes has one)."""
    try:
      found = dict(self._manager.metadata(step).custom_metadata or {})
    except Exception as e:  # pylint: disable=broad-except  # missing, empty or torn JSON
      raise DamagedCheckpoint(f"its metadata cannot be read: {type(e).__name__}") from e
    if "sha256" not in found:
      raise DamagedCheckpoint("its metadata records no SHA-256 of its arrays")
    return found

  def restore(self, like: GANState | None, step: int | None = None, *,
              check_layout: bool = True) -> Any:
    """The checkpoint at ``step`` (default: latest) as host arrays, shaped like ``like``.

    ``like=None`` reads the arrays back as the nested dicts they were saved as.

    Raises ``DamagedCheckpoint`` when it cannot be read or its arrays do not
    match the digest recorded when it was written, and ``OldLayout`` (a
    ``UserError``) for a checkpoint of another state layout.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"There is no checkpoint in {self.directory}.")
    if check_layout and self.layout(step) not in (None, LAYOUT_VERSION):
      raise OldLayout(f"The checkpoint at step {step} in {self.directory} has state layout "
                      f"{self.layout(step)}; this gan_jax reads layout {LAYOUT_VERSION}. Pass "
                      f"another --workdir to start a new run.")
    target = None if like is None else host_copy(like)  # NumPy leaves: read back as NumPy
    expected = self.metadata(step)["sha256"]
    try:
      restored = self._manager.restore(step, args=ocp.args.StandardRestore(target))
    except Exception as e:  # pylint: disable=broad-except
      first = str(e).strip().splitlines()[0] if str(e).strip() else ""
      raise DamagedCheckpoint(f"{type(e).__name__}: {first[:300]}") from e
    if like is None:
      restored = host_copy(restored)
    elif jax.tree.structure(restored) != jax.tree.structure(target):
      raise DamagedCheckpoint("its tree of arrays differs from the model's")
    if tree_digest(restored) != expected:
      raise DamagedCheckpoint("its arrays do not match the SHA-256 recorded when it was written")
    return restored

  def restore_latest_valid(self, like: GANState, report: Callable[[str], None] = print
                           ) -> tuple[GANState, dict[str, Any]] | None:
    """(state, metadata) of the newest checkpoint that reads back intact; None if none exist.

    Each damaged checkpoint met on the way is reported through ``report`` and
    moved to ``<workdir>/damaged_checkpoints/<step>`` (so that training through
    its step again writes a good one). Raises ``UserError`` if every
    checkpoint is damaged.
    """
    steps = self.all_steps()
    damaged = []
    for step in reversed(steps):
      try:
        state = self.restore(like, step)
        meta = self.metadata(step)
      except DamagedCheckpoint as e:
        where = self._set_aside(step)
        damaged.append(step)
        report(f"warning: the checkpoint at step {step} is damaged ({e}); it was moved to "
               f"{where} and the previous checkpoint is used instead.")
        continue
      return state, meta
    if damaged:
      raise UserError(
          f"Every checkpoint in {self.directory} is damaged (steps "
          f"{', '.join(map(str, damaged))}; moved to "
          f"{os.path.join(self.workdir, 'damaged_checkpoints')}). Launch again to start this "
          f"run from step 0, or use another --workdir.")
    return None

  def _set_aside(self, step: int) -> str:
    target = os.path.join(self.workdir, "damaged_checkpoints", str(step))
    if jax.process_index() == 0 and not self.read_only:
      os.makedirs(os.path.dirname(target), exist_ok=True)
      n = 1
      while os.path.exists(target):
        target, n = os.path.join(self.workdir, "damaged_checkpoints", f"{step}.{n}"), n + 1
      shutil.move(os.path.join(self.directory, str(step)), target)
    self._manager.reload()
    return target

  def layout(self, step: int) -> int | None:
    """The state layout version a checkpoint records (1 for those written before versions
    were recorded), or None when its metadata is damaged (its restore reports that)."""
    try:
      return int(self.metadata(step).get("layout", 1))
    except (DamagedCheckpoint, TypeError, ValueError):
      return None

  def check_layout(self) -> None:
    """Refuse, in one paragraph, a workdir whose newest checkpoint has another state layout."""
    step = self.latest_step()
    if step is None:
      return
    found = self.layout(step)
    if found is None or found == LAYOUT_VERSION:
      return
    raise OldLayout(
        f"The workdir {self.workdir!r} holds checkpoints (newest: step {step}) written with "
        f"state layout {found}, and this gan_jax writes and resumes layout {LAYOUT_VERSION} "
        f"(each player's params, variable collections and optimizer state, G's EMA and the "
        f"per-replica hyperparameters). Training cannot resume them: pass another --workdir "
        f"to start a new run, or continue this one with gan_jax 0.1.0. "
        f"'--mode=eval' still scores their generator (its raw parameters).")

  def close(self) -> None:
    self._manager.close()


def saved_config(ckpt: Checkpointer) -> dict[str, Any] | None:
  """The config that the newest checkpoint was made with, if it can be read.

  From that checkpoint's metadata, else from ``<workdir>/config.json`` (which
  every training run writes); None for a workdir without checkpoints.
  """
  step = ckpt.latest_step()
  if step is None:
    return None
  try:
    text = ckpt.metadata(step).get("config")
    if text:
      return json.loads(text)
  except Exception:  # pylint: disable=broad-except  # unreadable: see config.json
    pass
  try:
    with open(os.path.join(ckpt.workdir, "config.json")) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


@contextlib.contextmanager
def private_copy(ckpt: Checkpointer, step: int) -> Iterator[Checkpointer]:
  """A read-only Checkpointer over a private copy of ``ckpt``'s checkpoint of ``step``, for
  reading a workdir that a run is training in: its retention may remove the original at
  any moment. ``OSError`` when the original went before it was copied whole."""
  tmp = tempfile.mkdtemp(prefix="gan_jax_checkpoint_")
  try:
    shutil.copytree(os.path.join(ckpt.directory, str(step)),
                    os.path.join(tmp, "checkpoints", str(step)))
    copy = Checkpointer(tmp, read_only=True)
    try:
      yield copy
    finally:
      copy.close()
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def generator_params(ckpt: Checkpointer, step: int | None = None) -> Any:
  """G's parameters from a checkpoint of any layout (digest verified), as host arrays."""
  tree = ckpt.restore(None, step, check_layout=False)
  if "g" in tree and isinstance(tree["g"], dict) and "params" in tree["g"]:
    return tree["g"]["params"]
  return tree["g_params"]


def restore_latest(workdir: str, like: GANState) -> GANState | None:
  """The newest intact checkpoint in ``workdir``, or None if it has none."""
  ckpt = Checkpointer(workdir)
  try:
    found = ckpt.restore_latest_valid(like)
    return None if found is None else found[0]
  finally:
    ckpt.close()
