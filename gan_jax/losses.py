"""The GAN value function and the players' losses, computed from logits.

D returns a logit l; D(x) = sigmoid(l). Every quantity below is written with
``jax.nn.log_sigmoid`` (log D = log_sigmoid(l), log(1 - D) = log_sigmoid(-l)),
which stays finite, with finite gradients, for logits of any magnitude.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

G_LOSS_KINDS = ("minimax", "non_saturating")


def binary_cross_entropy(logits: jax.Array, label: float | jax.Array) -> jax.Array:
  """Elementwise BCE between ``label`` in [0, 1] and sigmoid(logits), in nats."""
  return -(label * jax.nn.log_sigmoid(logits) +
           (1.0 - label) * jax.nn.log_sigmoid(-logits))


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array, *,
                       real_label: float = 1.0) -> jax.Array:
  """D's loss: mean BCE over the joint batch, label ``real_label`` for data, 0 for samples.

  Equals 0.5 * (BCE(real_label, D(x)) + BCE(0, D(G(z)))), the authors' form; with
  ``real_label == 1`` and equal batch sizes it is -V(D, G) / 2, so minimising it
  is D's ascent on the value function. ``real_label < 1`` gives one-sided label
  smoothing (generated samples keep the label 0).
  """
  return 0.5 * (jnp.mean(binary_cross_entropy(real_logits, real_label)) +
                jnp.mean(binary_cross_entropy(fake_logits, 0.0)))


def generator_loss(fake_logits: jax.Array, *, kind: str) -> jax.Array:
  """G's loss on D's logits for generated samples.

  Args:
    fake_logits: D's logits for G(z).
    kind: ``"minimax"``: mean log(1 - D(G(z))), the saturating form of eq. 1;
      ``"non_saturating"``: -mean log D(G(z)), i.e. BCE with label 1. Or an
      integer array indexing ``G_LOSS_KINDS`` (a sweep over the loss under vmap).
  """
  if isinstance(kind, jax.Array):
    return jnp.where(kind == G_LOSS_KINDS.index("minimax"),
                     jnp.mean(jax.nn.log_sigmoid(-fake_logits)),
                     -jnp.mean(jax.nn.log_sigmoid(fake_logits)))
  if kind == "minimax":
    return jnp.mean(jax.nn.log_sigmoid(-fake_logits))
  if kind == "non_saturating":
    return -jnp.mean(jax.nn.log_sigmoid(fake_logits))
  raise ValueError(
      f"Unknown generator loss kind {kind!r}; use one of {G_LOSS_KINDS}.")


def value_function(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Minibatch estimate of V(D, G) = E log D(x) + E log(1 - D(G(z))) (eq. 1), in nats."""
  return (jnp.mean(jax.nn.log_sigmoid(real_logits)) +
          jnp.mean(jax.nn.log_sigmoid(-fake_logits)))


# --- Theory helpers (Proposition 1, Theorem 1). Densities are arrays on a grid. ---

def optimal_discriminator(p_data: jax.Array, p_g: jax.Array) -> jax.Array:
  """D*_G(x) = p_data(x) / (p_data(x) + p_g(x)) (Proposition 1); 1/2 where both vanish."""
  total = p_data + p_g
  return jnp.where(total > 0, p_data / jnp.where(total > 0, total, 1.0), 0.5)


def jensen_shannon(p: np.ndarray, q: np.ndarray, dx: float) -> float:
  """JSD(p || q) in nats of two densities sampled on a uniform grid of spacing ``dx``."""
  p = np.asarray(p, np.float64)
  q = np.asarray(q, np.float64)
  m = 0.5 * (p + q)

  def kl(a, b):
    mask = a > 0
    return float(np.sum(a[mask] * np.log(a[mask] / b[mask])) * dx)

  return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def optimal_value(p_data: np.ndarray, p_g: np.ndarray, dx: float) -> float:
  """C(G) = max_D V(D, G) = -log 4 + 2 JSD(p_data || p_g) (Theorem 1's identity)."""
  return -np.log(4.0) + 2.0 * jensen_shannon(p_data, p_g, dx)
