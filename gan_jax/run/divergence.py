"""Divergence: the first non-finite loss, gradient norm or parameter, named with its step."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from gan_jax.errors import UserError


class Divergence(UserError):
  """Training produced a non-finite loss, gradient norm or parameter."""


def first_nonfinite(metrics: dict[str, np.ndarray], first_step: int
                    ) -> tuple[str, float, int] | None:
  """(quantity, value, step) of the earliest non-finite metric of a chunk that followed
  ``first_step``, or None. A metric measured at every s-th iteration only (shorter than
  the chunk, as the gradient norms with ``norms_every``) is placed at those iterations."""
  found, length = None, max((len(v) for v in metrics.values()), default=0)
  for key, values in sorted(metrics.items()):
    bad = np.flatnonzero(~np.isfinite(values))
    if not bad.size:
      continue
    step = first_step + (int(bad[0]) + 1) * (length // len(values))
    if found is None or step < found[2]:
      found = (key, float(values[bad[0]]), step)
  return found


def nonfinite_leaves(tree: Any) -> list[str]:
  """Paths of the floating-point leaves of ``tree`` that hold a NaN or inf."""
  bad = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    a = np.asarray(leaf)
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
      bad.append(jax.tree_util.keystr(path))
  return bad


def error(what: str, step: int, last_good: int | None, rollbacks: int) -> Divergence:
  """The paragraph that stops a diverged run: what, where, what is kept, what to do."""
  kept = (f"The newest checkpoint (step {last_good}) is intact and was taken before the "
          f"divergence" if last_good is not None else "No checkpoint had been written")
  tried = (f" after {rollbacks} rollback(s) to the last good state with new random keys"
           if rollbacks else "")
  retry = ("raise --config.max_rollbacks" if rollbacks else
           "set --config.on_divergence=rollback to retry from it with a new random key")
  return Divergence(
      f"Training diverged{tried}: {what} at step {step}. {kept}. Lower the learning rate "
      f"(--config.optimizer.learning_rate) or change the seed and launch again (a lower "
      f"learning rate resumes from that checkpoint), or {retry}.")
