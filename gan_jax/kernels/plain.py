"""The textbook kernels: each computation as JAX, Flax and optax write it.

Every kernel set (this one and ``cpu``) defines the same names with the same
results; ``gan_jax.kernels`` chooses one per run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax

PyTree = Any

conv_general_dilated = lax.conv_general_dilated  # nn.Conv's own product


def join_updates(modules: Any, grads: PyTree, *after: Any) -> PyTree:
  """``grads`` for the optimizer of ``modules``, after ``after``: no ordering is needed here."""
  del modules, after
  return grads


def global_norm(tree: PyTree) -> jax.Array:
  """The L2 norm of all leaves of ``tree`` together."""
  return optax.tree.norm(tree)


def mask_bit_width(keep: float) -> int:
  """Bits of randomness per mask element: the fewest that represent ``keep`` exactly, else 16."""
  for width in (1, 2, 4, 8, 16):
    scaled = keep * (1 << width)
    if abs(scaled - round(scaled)) < 1e-9:
      return width
  return 16


def mask_words(key: jax.Array, keep: float, size: int) -> tuple[jax.Array, int, int]:
  """(uint32 words, field width, threshold) of a packed Bernoulli mask of ``size`` elements."""
  width = mask_bit_width(keep)
  words = jax.random.bits(key, (-(-size // (32 // width)),), jnp.uint32)
  return words, width, int(round(keep * (1 << width)))


def bernoulli_mask(key: jax.Array, keep: float, shape: Sequence[int]) -> tuple[jax.Array, float]:
  """Boolean mask with P(True) = ``keep`` (to 16 bits) and the probability realised.

  Element i is True when the i-th ``width``-bit field of the uint32 words, low
  bits first, is below ``keep * 2**width``: a keep of 0.5 costs one random bit
  per element instead of 32.
  """
  size = math.prod(shape)
  words, width, threshold = mask_words(key, keep, size)
  if threshold == 1 << width:
    return jnp.ones(shape, bool), 1.0
  shifts = jnp.arange(0, 32, width, dtype=jnp.uint32)
  fields = (words[:, None] >> shifts) & jnp.uint32((1 << width) - 1)  # [words, 32 // width]
  return fields.reshape(-1)[:size].reshape(shape) < threshold, threshold / (1 << width)


def maxout(z: jax.Array, pieces: int, width: int) -> jax.Array:
  """Max over ``pieces`` piece-major slabs of z [..., pieces * width] -> [..., width].

  Ties go to the first slab, and a NaN in any slab propagates; the gradient
  reaches the slab that holds the max.
  """
  h = z[..., :width]
  for p in range(1, pieces):
    zp = z[..., p * width:(p + 1) * width]
    h = jnp.where((zp > h) | jnp.isnan(zp), zp, h)
  return h


def _dense_dims(x: jax.Array) -> tuple:
  return (((x.ndim - 1,), (0,)), ((), ()))


def make_bf16_dot_general(weight_gradient: Callable[[jax.Array, jax.Array], jax.Array]
                          ) -> Callable[..., jax.Array]:
  """A ``dot_general`` for ``nn.Dense``: bfloat16 operands and float32 products, forward and
  backward, so float32 parameters get float32 gradients. ``weight_gradient(x [N, I], ct
  [N, O])`` computes x^T ct from bfloat16 operands in float32."""

  @jax.custom_vjp
  def matmul(x, w):
    return lax.dot_general(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), _dense_dims(x),
                           preferred_element_type=jnp.float32)

  def fwd(x, w):
    xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    y = lax.dot_general(xb, wb, _dense_dims(x), preferred_element_type=jnp.float32)
    return y, (xb, wb, jnp.zeros((0,), x.dtype), jnp.zeros((0,), w.dtype))

  def bwd(res, ct):
    xb, wb, x_like, w_like = res
    ctb = ct.astype(jnp.bfloat16)
    dx = lax.dot_general(ctb, wb, (((ct.ndim - 1,), (1,)), ((), ())),
                         preferred_element_type=jnp.float32)
    dw = weight_gradient(xb.reshape(-1, xb.shape[-1]), ctb.reshape(-1, ctb.shape[-1]))
    return dx.astype(x_like.dtype), dw.astype(w_like.dtype)

  matmul.defvjp(fwd, bwd)

  def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    del precision, preferred_element_type
    if rhs.ndim != 2 or dimension_numbers != _dense_dims(lhs):
      raise ValueError(f"the bfloat16 dot_general supports Dense's product only (lhs [..., K] x "
                       f"rhs [K, N]); got dimension_numbers {dimension_numbers}.")
    return matmul(lhs, rhs)

  return dot_general


def weight_gradient(x: jax.Array, ct: jax.Array) -> jax.Array:
  """x^T @ ct for x [N, I] and ct [N, O], accumulated in float32."""
  return lax.dot_general(x, ct, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)


bf16_dot_general = make_bf16_dot_general(weight_gradient)


def conv_transpose(features: int, kernel_size: tuple[int, int], strides: tuple[int, int], *,
                   dtype: Any, name: str | None = None) -> nn.Module:
  """A transposed convolution with "SAME" padding: ``nn.ConvTranspose``."""
  return nn.ConvTranspose(features, kernel_size, strides, padding="SAME", dtype=dtype, name=name)

