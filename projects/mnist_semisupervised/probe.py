"""Linear probes: multinomial logistic regression on fixed features, with few labels.

``balanced_draw`` picks the labelled examples (the same number of each class);
``fit_probe`` fits the probe on them alone (features standardised by the labelled set's
own statistics), for each L2 weight of a grid at once (``jax.vmap``), and keeps the weight
whose error on the validation split is lowest. Test labels reach only ``error``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gan_jax.errors import UserError

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # on the mean cross-entropy; chosen on validation
ITERATIONS = 100  # L-BFGS iterations (full batch; 300 gave the same test errors)


def balanced_draw(labels: np.ndarray, count: int, seed: int, num_classes: int = 10, *,
                  flag: str = "--counts") -> np.ndarray:
  """Indices of ``count`` examples of ``labels``, ``count / num_classes`` of each class,
  drawn without replacement by ``seed``; ``count == len(labels)``: all of them. ``flag``:
  the command-line flag the error names."""
  labels = np.asarray(labels)
  if count == len(labels):
    return np.arange(len(labels))
  per_class = count // num_classes
  held = np.bincount(labels, minlength=num_classes)
  if count > len(labels) or count % num_classes or count <= 0 or per_class > held.min():
    raise UserError(
        f"{flag}={count}: cannot draw {count} labels from a split of {len(labels)} examples: "
        f"a draw takes the same number of each of the {num_classes} classes, so the count must "
        f"be a positive multiple of {num_classes} with at most {held.min()} per class (the rarest "
        f"class's examples here), i.e. at most {num_classes * held.min()}; or exactly "
        f"{len(labels)} for the whole split (e.g. {flag}=100).")
  rng = np.random.RandomState(seed)
  picked = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
            for c in range(num_classes)]
  return np.sort(np.concatenate(picked))


@dataclasses.dataclass(frozen=True)
class Probe:
  mean: np.ndarray
  scale: np.ndarray
  weights: np.ndarray  # [features, classes]
  bias: np.ndarray
  l2: float

  def logits(self, x: np.ndarray) -> np.ndarray:
    return ((np.asarray(x, np.float32) - self.mean) / self.scale) @ self.weights + self.bias

  def error(self, x: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(self.logits(x).argmax(1) != np.asarray(labels)))


def _fit(x, y, l2, num_classes, iterations):
  params = (jnp.zeros((x.shape[1], num_classes)), jnp.zeros((num_classes,)))

  def loss(p):
    logits = x @ p[0] + p[1]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return ce + l2 * jnp.sum(p[0] ** 2)

  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  def body(carry, _):
    p, state = carry
    value, grad = value_and_grad(p, state=state)
    updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=loss)
    return (optax.apply_updates(p, updates), state), None

  (params, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=iterations)
  return params


_fit_grid = jax.jit(jax.vmap(_fit, in_axes=(None, None, 0, None, None)),
                    static_argnums=(3, 4))


def fit_probe(x: np.ndarray, y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, *,
              l2_grid: Sequence[float] = L2_GRID, num_classes: int = 10,
              iterations: int = ITERATIONS) -> Probe:
  """The probe fitted on (x, y) alone, its L2 weight chosen by error on (val_x, val_y)."""
  x = np.asarray(x, np.float32)
  mean, scale = x.mean(0), x.std(0) + 1e-6
  w, b = _fit_grid(jnp.asarray((x - mean) / scale), jnp.asarray(y, jnp.int32),
                   jnp.asarray(l2_grid, jnp.float32), num_classes, iterations)
  probes = [Probe(mean, scale, np.asarray(w[i]), np.asarray(b[i]), float(l2))
            for i, l2 in enumerate(l2_grid)]
  return min(probes, key=lambda p: p.error(val_x, val_y))
