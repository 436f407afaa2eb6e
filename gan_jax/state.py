"""The GAN spec (static, hashable) and the training state (a pytree)."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gan_jax import losses

Params = Any
LATENT_DISTS = ("uniform", "normal")
UPDATES = ("alternating", "simultaneous")


@dataclasses.dataclass(frozen=True)
class GAN:
  """Everything static about a GAN: players, optimizers and the game's options.

  Attributes:
    generator: Linen module, ``G.apply({'params': p}, z) -> x``.
    discriminator: Linen module, ``D.apply({'params': p}, x, train=..., rngs=...) -> logits [B]``.
    g_optimizer, d_optimizer: optax transformations for each player.
    latent_dim: size of z.
    latent_dist: ``"uniform"`` (U(-sqrt 3, sqrt 3), unit variance, the paper's) or ``"normal"``.
    g_loss: ``"non_saturating"`` or ``"minimax"`` (see ``gan_jax.losses.generator_loss``).
    real_label: D's target for real data; < 1 is one-sided label smoothing.

  ``g_loss``, ``real_label`` and the optimizers' learning rates may also be traced
  arrays (``g_loss`` as an index into ``losses.G_LOSS_KINDS``): a spec built inside
  ``jax.vmap`` for one replica of a sweep (see ``gan_jax.sweep``). Such a spec is
  not hashable and is never passed to ``jax.jit`` as a static argument.
    k: D updates per G update in the alternating mode (Algorithm 1).
    update_rule: ``"alternating"`` (Algorithm 1: k D steps, then a G step on fresh noise) or
      ``"simultaneous"`` (the authors' MNIST run: both players' gradients from one
      minibatch and the same samples, applied together).
  """

  generator: nn.Module
  discriminator: nn.Module
  g_optimizer: optax.GradientTransformation
  d_optimizer: optax.GradientTransformation
  latent_dim: int
  latent_dist: str = "uniform"
  g_loss: str = "non_saturating"
  real_label: float = 1.0
  k: int = 1
  update_rule: str = "alternating"

  def __post_init__(self):
    if self.latent_dist not in LATENT_DISTS:
      raise ValueError(f"GAN.latent_dist is {self.latent_dist!r}; use one of {LATENT_DISTS}.")
    if isinstance(self.g_loss, str) and self.g_loss not in losses.G_LOSS_KINDS:
      raise ValueError(f"GAN.g_loss is {self.g_loss!r}; use one of {losses.G_LOSS_KINDS}.")
    if self.update_rule not in UPDATES:
      raise ValueError(f"GAN.update_rule is {self.update_rule!r}; use one of {UPDATES}.")
    if not (isinstance(self.k, int) and self.k >= 1):
      raise ValueError(f"GAN.k is {self.k!r}; it must be an integer >= 1.")
    if self.update_rule == "simultaneous" and self.k != 1:
      raise ValueError(f"GAN.k is {self.k} but update_rule='simultaneous' uses one minibatch "
                       "per iteration; set k=1 or use update_rule='alternating'.")
    if not isinstance(self.real_label, jax.Array) and not 0.0 < self.real_label <= 1.0:
      raise ValueError(f"GAN.real_label is {self.real_label}; it must lie in (0, 1].")
    if self.latent_dim < 1:
      raise ValueError(f"GAN.latent_dim is {self.latent_dim}; it must be >= 1.")

  @property
  def real_batches_per_step(self) -> int:
    """Real minibatches one training iteration consumes (k, or 1 when simultaneous)."""
    return self.k if self.update_rule == "alternating" else 1

  @property
  def noise_batches_per_step(self) -> int:
    """Noise minibatches one training iteration consumes (k + 1, or 1 when simultaneous)."""
    return self.k + 1 if self.update_rule == "alternating" else 1


@flax.struct.dataclass
class GANState:
  """Training state: iteration count, both players' parameters and optimizer states."""

  step: jax.Array  # int32 scalar: completed training iterations
  g_params: Params
  d_params: Params
  g_opt_state: optax.OptState
  d_opt_state: optax.OptState


def sample_latent(gan: GAN, rng: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Noise z ~ p_z of shape ``shape + (latent_dim,)``, float32, unit variance per dimension."""
  full = tuple(shape) + (gan.latent_dim,)
  if gan.latent_dist == "uniform":
    r = math.sqrt(3.0)
    return jax.random.uniform(rng, full, jnp.float32, -r, r)
  return jax.random.normal(rng, full, jnp.float32)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init(gan: GAN, feature_shape: tuple[int, ...], rng: jax.Array) -> GANState:
  g_key, d_key = jax.random.split(rng)
  z = jnp.zeros((1, gan.latent_dim), jnp.float32)
  x = jnp.zeros((1,) + feature_shape, jnp.float32)
  g_params = gan.generator.init(g_key, z)["params"]
  d_params = gan.discriminator.init({"params": d_key}, x, train=False)["params"]
  return GANState(
      step=jnp.zeros((), jnp.int32),
      g_params=g_params,
      d_params=d_params,
      g_opt_state=gan.g_optimizer.init(g_params),
      d_opt_state=gan.d_optimizer.init(d_params),
  )


def init_state(gan: GAN, rng: jax.Array, real_example: jax.Array, *,
               g_output_bias: np.ndarray | jax.Array | None = None) -> GANState:
  """Initial GANState (one compiled call).

  Args:
    gan: the spec.
    rng: PRNG key.
    real_example: a batch shaped like the real data, ``[B, features]``; only its
      shape is read.
    g_output_bias: optional value for G's ``output/bias`` (e.g.
      ``models.marginal_output_bias(train_mean)``, the authors' initialisation).
  """
  state = _init(gan, tuple(int(d) for d in np.shape(real_example)[1:]), rng)
  if g_output_bias is None:
    return state
  old = state.g_params["output"]["bias"]
  bias = jnp.asarray(g_output_bias, old.dtype)
  if bias.shape != old.shape:
    raise ValueError(f"g_output_bias has shape {bias.shape}; G's output bias has shape {old.shape}.")
  g_params = {**state.g_params, "output": {**state.g_params["output"], "bias": bias}}
  # Optimizer states start from zeros/counts, independent of parameter values.
  return state.replace(g_params=g_params)
