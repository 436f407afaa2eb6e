"""1-D toy problems with closed-form densities, for checking the paper's theory.

With an affine generator G(z) = a z + b of standard normal noise, p_g is
N(b, |a|) in closed form, so D's curve can be compared with Proposition 1's
D*(x) = p_data / (p_data + p_g), and V(D, G) with C(G) = -log 4 + 2 JSD.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gan_jax import steps
from gan_jax.state import GAN, GANState


def gaussian_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
  """N(mean, std^2) density at x, float64."""
  x = np.asarray(x, np.float64)
  return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * np.sqrt(2.0 * np.pi))


def affine_generator_params(scale: float, shift: float) -> dict:
  """Parameters of ``MLPGenerator(output_dim=1, hidden=(), output_activation="linear")``
  that make G(z) = scale * z + shift."""
  return {"output": {"kernel": jnp.array([[scale]], jnp.float32),
                     "bias": jnp.array([shift], jnp.float32)}}


def affine_generator_density(g_params: dict, x: np.ndarray) -> np.ndarray:
  """p_g at x for an affine G of N(0, 1) noise: N(bias, |kernel|)."""
  a = float(np.asarray(g_params["output"]["kernel"]).reshape(()))
  b = float(np.asarray(g_params["output"]["bias"]).reshape(()))
  return gaussian_pdf(x, b, abs(a))


@functools.partial(jax.jit, static_argnums=(0, 2), static_argnames=("num_steps", "batch_size"))
def train_discriminator(gan: GAN, state: GANState, sample_real: Callable[[jax.Array, int], jax.Array],
                        key: jax.Array, *, num_steps: int, batch_size: int
                        ) -> tuple[GANState, jax.Array]:
  """``num_steps`` D updates with G held fixed (Proposition 1's setting); returns D's losses."""

  def body(state, i):
    k = jax.random.fold_in(key, i)
    real = sample_real(jax.random.fold_in(k, 0), batch_size)
    state, metrics = steps.d_step(gan, state, real, jax.random.fold_in(k, 1))
    return state, metrics["d_loss"]

  return lax.scan(body, state, jnp.arange(num_steps))


def discriminator_on_grid(gan: GAN, d_params: dict, grid: np.ndarray) -> np.ndarray:
  """D(x) = sigmoid(logit) at each grid point (no dropout), float64."""
  logits = gan.discriminator.apply({"params": d_params},
                                   jnp.asarray(np.asarray(grid)[:, None], jnp.float32),
                                   train=False)
  return np.asarray(jax.nn.sigmoid(logits), np.float64)


def value_on_grid(p_data: np.ndarray, p_g: np.ndarray, d: np.ndarray, dx: float) -> float:
  """V(D, G) = ∫ p_data log D + p_g log(1 - D) dx by the rectangle rule, in nats."""
  d = np.clip(d, 1e-12, 1.0 - 1e-12)
  return float(np.sum(p_data * np.log(d) + p_g * np.log(1.0 - d)) * dx)
