"""E: x -> z for a fixed generator, trained on G's own samples only.

The paper's section 7 suggests "an auxiliary network to predict z given x", trained after
G, like the wake-sleep algorithm's recognition model but with G fixed. ``fit_encoder``
draws fresh pairs (z, G(z)) at every step and fits E(G(z)) to z by squared error, plus,
with ``pixel_weight``, G(E(G(z))) to G(z) (through the fixed G: many z give nearly the same
image, so the latent error alone does not say how well E's guess redraws it); it takes no
data set, so real images can never reach E's training.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gan_jax import steps
from gan_jax.state import GAN, GANState, sample_latent


class Encoder(nn.Module):
  """E(x): ReLU Dense layers, then ``latent_dim`` outputs; for a prior on a box
  (``bound``: uniform on (-bound, bound)) squashed into it by ``bound * tanh``."""

  latent_dim: int = 100
  hidden: Sequence[int] = (1200, 1200)
  bound: float | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = x
    for i, width in enumerate(self.hidden):
      h = nn.relu(nn.Dense(width, name=f"hidden_{i}")(h))
    self.sow("intermediates", "features", h)  # the last hidden layer, for probes
    z = nn.Dense(self.latent_dim, name="output")(h)
    return z if self.bound is None else self.bound * jnp.tanh(z / self.bound)


def for_gan(gan: GAN, hidden: Sequence[int] = (1200, 1200)) -> Encoder:
  """An encoder for ``gan``'s prior (``sample_latent``: uniform on ±sqrt 3, or N(0, I))."""
  bound = math.sqrt(3.0) if gan.latent_dist == "uniform" else None
  return Encoder(latent_dim=gan.latent_dim, hidden=tuple(hidden), bound=bound)


def fit_encoder(gan: GAN, state: GANState, encoder: Encoder, rng: jax.Array, *,
                steps_total: int, batch_size: int = 100, learning_rate: float = 1e-3,
                ema: bool | None = None, chunk: int = 500, pixel_weight: float = 0.0,
                report: Any = None) -> tuple[Any, list[float]]:
  """E's parameters fitted to invert ``state``'s G (its EMA when ``ema`` or, None, when the
  state keeps one): Adam on the mean squared error ``|E(G(z)) - z|^2 / latent_dim`` over
  fresh noise, plus ``pixel_weight`` times ``|G(E(G(z))) - G(z)|^2 / pixels``, in jitted
  chunks of ``chunk`` steps. Returns (params, the mean latent error of each chunk)."""
  params = encoder.init(jax.random.fold_in(rng, 0), jnp.zeros((1, _data_dim(gan, state))))
  opt = optax.adam(learning_rate)
  opt_state = opt.init(params)
  run = jax.jit(functools.partial(_chunk, gan, encoder, opt, ema=ema, batch_size=batch_size,
                                  length=chunk, pixel_weight=pixel_weight))
  losses = []
  for start in range(0, steps_total, chunk):
    params, opt_state, loss = run(state, params, opt_state, jax.random.fold_in(rng, start + 1))
    losses.append(float(loss))
    if report is not None:
      report(min(start + chunk, steps_total), losses[-1])
  return params, losses


def _data_dim(gan: GAN, state: GANState) -> int:
  z = jax.ShapeDtypeStruct((1, gan.latent_dim), jnp.float32)
  return jax.eval_shape(lambda s, z: steps.generate(gan, s, z, ema=False), state, z).shape[-1]


def _chunk(gan, encoder, opt, state, params, opt_state, key, *, ema, batch_size, length,
           pixel_weight):
  def loss_fn(p, x, z):
    z_hat = encoder.apply(p, x)
    latent = jnp.mean(jnp.sum((z_hat - z) ** 2, axis=-1)) / gan.latent_dim
    if not pixel_weight:
      return latent, latent
    pixels = jnp.mean((steps.generate(gan, state, z_hat, ema=ema) - x) ** 2)
    return latent + pixel_weight * pixels, latent

  def body(carry, i):
    p, o = carry
    z = sample_latent(gan, jax.random.fold_in(key, i), (batch_size,))
    x = jax.lax.stop_gradient(steps.generate(gan, state, z, ema=ema))  # G stays fixed
    (_, loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, x, z)
    updates, o = opt.update(grads, o, p)
    return (optax.apply_updates(p, updates), o), loss

  (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), jnp.arange(length))
  return params, opt_state, losses.mean()


def encode(encoder: Encoder, params: Any, x: jax.Array, batch: int = 2_000) -> jax.Array:
  apply = jax.jit(encoder.apply)
  return jnp.concatenate([apply(params, x[i:i + batch]) for i in range(0, len(x), batch)])


def features(encoder: Encoder, params: Any, x: jax.Array) -> jax.Array:
  """E's last hidden layer on ``x`` (for linear probes)."""
  _, sown = encoder.apply(params, x, mutable=["intermediates"])
  return sown["intermediates"]["features"][0]
