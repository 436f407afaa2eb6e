"""XLA:CPU rewrites: the plain kernels' results, computed in forms that XLA:CPU runs fast.

Each function has ``plain``'s name and result (bit for bit unless its docstring says
otherwise); its docstring says what it replaces and why. The figures behind each
reason are in benchmarks/README.md.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from gan_jax.kernels import plain

PyTree = Any
_NHWC = ("NHWC", "HWIO", "NHWC")


def join(tree: PyTree) -> PyTree:
  """``tree`` unchanged in value, each leaf computed after all of the leaves.

  Adds to each leaf an exact zero (0 times whether the first element of each
  leaf is NaN) that depends on every leaf.
  """
  leaves = [x for x in jax.tree.leaves(tree) if x.size]
  if not leaves:
    return tree
  zero = sum((jnp.isnan(x.reshape(-1)[0]).astype(jnp.float32) for x in leaves),
             jnp.zeros((), jnp.float32)) * 0.0
  return jax.tree.map(lambda x: x + zero.astype(x.dtype), tree)


def _computes_in_bf16(module: Any) -> bool:
  return jnp.dtype(getattr(module, "dtype", None) or jnp.float32) == jnp.bfloat16


def join_updates(modules: Any, grads: PyTree, *after: Any) -> PyTree:
  """``grads``, each leaf computed after all of them and all of ``after``.

  Replaces: no ordering. A weight that a backward pass reads (the layer above's, or D's
  for G's gradient) is otherwise copied at the top of every scanned iteration so that its
  update can be in place. Players that compute with bfloat16 copies of their weights never
  read the float32 ones after the forward pass; for them the order only keeps an update
  from overlapping the backward pass, so they are left out.
  """
  mods = modules if isinstance(modules, tuple) else (modules,)
  if all(_computes_in_bf16(m) for m in mods):
    return grads
  return join((grads,) + after)[0]


def global_norm(tree: PyTree) -> jax.Array:
  """The L2 norm of all leaves of ``tree`` together (``optax.tree.norm``'s value).

  Replaces: ``optax.tree.norm``. XLA:CPU turns a sum over a large array into reduce-windows
  far below memory speed; each leaf's sum of squares as a product with a row of ones is not.
  """
  total = jnp.zeros((), jnp.float32)
  for x in jax.tree.leaves(tree):
    x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)
    ones = jnp.ones((1, x.shape[0]), x.dtype)
    total += jnp.sum(jnp.dot(ones, jnp.square(x), preferred_element_type=jnp.float32))
  return jnp.sqrt(total)


mask_bit_width = plain.mask_bit_width


def bernoulli_mask(key: jax.Array, keep: float, shape: Sequence[int]) -> tuple[jax.Array, float]:
  """``plain.bernoulli_mask``, bit for bit.

  Replaces: shifting each field out of its word. For 8- and 16-bit fields a bitcast of the
  words to uint8/uint16 gives the fields in the same order on a little-endian machine, and
  XLA:CPU then reads a plain array instead of working out each element's word and shift.
  """
  size = math.prod(shape)
  words, width, threshold = plain.mask_words(key, keep, size)
  if width not in (8, 16) or threshold == 1 << width:
    return plain.bernoulli_mask(key, keep, shape)
  fields = lax.bitcast_convert_type(words, jnp.uint16 if width == 16 else jnp.uint8)
  return fields.reshape(-1)[:size].reshape(shape) < threshold, threshold / (1 << width)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def maxout(z: jax.Array, pieces: int, width: int) -> jax.Array:
  """``plain.maxout``, bit for bit, values and gradients.

  Replaces: autodiff of the fold, which XLA:CPU ran as a pad and add per slab. The gradient
  is one select per slab from an int8 index that the forward pass takes with ``lax.argmax``
  (a reduction, so XLA computes it once instead of fusing a fold into every slab's select).
  """
  return plain.maxout(z, pieces, width)


def _maxout_fwd(z, pieces, width):
  slabs = z.reshape(z.shape[:-1] + (pieces, width))
  index = lax.argmax(slabs, z.ndim - 1, jnp.int32)
  return plain.maxout(z, pieces, width), index.astype(jnp.int8 if pieces <= 127 else jnp.int32)


def _maxout_bwd(pieces, width, index, g):
  del width
  zero = jnp.zeros((), g.dtype)
  return (jnp.concatenate([jnp.where(index == p, g, zero) for p in range(pieces)], axis=-1),)


maxout.defvjp(_maxout_fwd, _maxout_bwd)


def weight_gradient(x: jax.Array, ct: jax.Array) -> jax.Array:
  """``plain.weight_gradient`` for bfloat16 operands, to float32 rounding.

  Replaces: a product contracting both operands' first axis, which XLA:CPU runs with a
  generic kernel that converts bfloat16 to float32 first, leaving the bf16 units idle.
  As x^T [I, N'] @ ct [N', O], rows zero-padded to a multiple of 32, it goes to YNNPACK
  and the bf16 units. Transpose and pad move the bits as uint16: XLA:CPU computes a
  bfloat16 transpose or pad in float32, converting in and out.
  """
  pad = 32 - x.shape[0] % 32
  zero = jnp.zeros((), jnp.uint16)
  xt = lax.pad(lax.bitcast_convert_type(x, jnp.uint16).T, zero, ((0, 0, 0), (0, pad, 0)))
  ctp = lax.pad(lax.bitcast_convert_type(ct, jnp.uint16), zero, ((0, pad, 0), (0, 0, 0)))
  return lax.dot_general(lax.bitcast_convert_type(xt, x.dtype),
                         lax.bitcast_convert_type(ctp, ct.dtype), (((1,), (0,)), ((), ())),
                         preferred_element_type=jnp.float32)


bf16_dot_general = plain.make_bf16_dot_general(weight_gradient)


def _conv(x, kernel, strides, pads, lhs_dilation):
  return lax.conv_general_dilated(x, kernel, strides, pads, lhs_dilation=lhs_dilation,
                                  dimension_numbers=_NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_matmul_grad(x, kernel, strides, pads, lhs_dilation):
  return _conv(x, kernel, strides, pads, lhs_dilation)


def _conv_matmul_grad_fwd(x, kernel, strides, pads, lhs_dilation):
  return _conv(x, kernel, strides, pads, lhs_dilation), (x, kernel)


def _transposed_kernel_grad(x, g, kernel_shape, pads, lhs_dilation):
  """Tap (i, j) of a transposed convolution pairs input pixel (h, w) with output pixel
  (lo + s h - i, lo + s w - j): slicing g there keeps the patches at the input's size."""
  kh, kw, c, o = kernel_shape
  (sh, sw), (hi_, wi) = lhs_dilation, x.shape[1:3]
  (lo_h, _), (lo_w, _) = pads
  a_h, a_w = kh - 1, kw - 1  # left padding of g, so that every start is >= 0
  need_h = lo_h + sh * (hi_ - 1) + a_h + 1 - (g.shape[1] + a_h)
  need_w = lo_w + sw * (wi - 1) + a_w + 1 - (g.shape[2] + a_w)
  gp = lax.pad(g, jnp.zeros((), g.dtype), [(0, 0, 0), (a_h, max(need_h, 0), 0),
                                           (a_w, max(need_w, 0), 0), (0, 0, 0)])
  taps = [lax.slice(gp, (0, lo_h - i + a_h, lo_w - j + a_w, 0),
                    (gp.shape[0], lo_h - i + a_h + sh * (hi_ - 1) + 1,
                     lo_w - j + a_w + sw * (wi - 1) + 1, o), (1, sh, sw, 1))
          for i in range(kh) for j in range(kw)]
  patches = jnp.stack(taps, axis=3).reshape(-1, kh * kw * o)  # [B*hi*wi, taps * o]
  dk = jnp.dot(x.reshape(-1, c).T, patches, preferred_element_type=jnp.float32)
  return dk.reshape(c, kh, kw, o).transpose(1, 2, 0, 3)


def _strided_kernel_grad(x, g, kernel_shape, strides, pads, lhs_dilation):
  """Tap (i, j) of a strided convolution is a strided slice of the padded input."""
  kh, kw, c, o = kernel_shape
  (sh, sw), (ho, wo) = strides, g.shape[1:3]
  interior = [(lo, hi, d - 1) for (lo, hi), d in zip(pads, lhs_dilation, strict=True)]
  config = [(0, 0, 0)] + interior + [(0, 0, 0)]
  xp = lax.pad(x, jnp.zeros((), x.dtype), config)
  taps = [lax.slice(xp, (0, i, j, 0), (xp.shape[0], i + sh * (ho - 1) + 1,
                                       j + sw * (wo - 1) + 1, c), (1, sh, sw, 1))
          for i in range(kh) for j in range(kw)]
  patches = jnp.stack(taps, axis=3).reshape(-1, kh * kw * c)  # [B*ho*wo, taps * c]
  return jnp.dot(patches.T, g.reshape(-1, o), preferred_element_type=jnp.float32)


def _conv_matmul_grad_bwd(strides, pads, lhs_dilation, res, g):
  x, kernel = res
  _, input_vjp = jax.vjp(lambda x: _conv(x, kernel, strides, pads, lhs_dilation), x)
  (dx,) = input_vjp(g)
  if strides == (1, 1) and lhs_dilation != (1, 1):
    dk = _transposed_kernel_grad(x, g, kernel.shape, pads, lhs_dilation)
  else:
    dk = _strided_kernel_grad(x, g, kernel.shape, strides, pads, lhs_dilation)
  return dx, dk.reshape(kernel.shape).astype(kernel.dtype)


_conv_matmul_grad.defvjp(_conv_matmul_grad_fwd, _conv_matmul_grad_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated``, for ``nn.Conv(conv_general_dilated=...)``.

  Replaces: XLA:CPU's kernel gradient of a strided or transposed convolution, a naive
  loop (2 of the 2.9 s of a DCGAN-style iteration at MNIST's size). The kernel gradient
  is the patches (a strided slice per tap) times the output gradient, a matmul; the
  forward pass and input gradient stay XLA's. Forms other than a plain 2-D NHWC/HWIO
  convolution go to lax unchanged.
  """
  lhs_dilation = tuple(lhs_dilation or (1,) * (lhs.ndim - 2))
  simple = (lhs.ndim == 4 and feature_group_count == 1 and batch_group_count == 1
            and all(d == 1 for d in (rhs_dilation or (1, 1))) and preferred_element_type is None
            and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
            == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC))
  if not simple:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                    rhs_dilation, dimension_numbers, feature_group_count,
                                    batch_group_count, precision, preferred_element_type)
  if isinstance(padding, str):
    dilated = [(n - 1) * d + 1 for n, d in zip(lhs.shape[1:3], lhs_dilation, strict=True)]
    padding = lax.padtype_to_pads(dilated, rhs.shape[:2], window_strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  return _conv_matmul_grad(lhs, rhs, tuple(window_strides), pads, lhs_dilation)


class ConvTranspose(nn.Module):
  """``nn.ConvTranspose(padding="SAME")``'s parameters and outputs, computed by
  ``conv_general_dilated`` above (``nn.ConvTranspose`` takes no product to inject)."""

  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        tuple(self.kernel_size) + (x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    x, kernel, bias = x.astype(self.dtype), kernel.astype(self.dtype), bias.astype(self.dtype)
    pads = []
    # lax.conv_transpose's "SAME" padding
    for k, s in zip(self.kernel_size, self.strides, strict=True):
      total = k + s - 2
      lo = k - 1 if s > k - 1 else -(-total // 2)
      pads.append((lo, total - lo))
    y = conv_general_dilated(x, kernel, (1, 1), pads, lhs_dilation=tuple(self.strides),
                             dimension_numbers=_NHWC)
    return y + bias  # pyright: ignore[reportOperatorIssue] (custom_vjp's return type)


def conv_transpose(features: int, kernel_size: tuple[int, int], strides: tuple[int, int], *,
                   dtype: Any, name: str | None = None) -> nn.Module:
  """``plain.conv_transpose``, with the kernel gradient of ``conv_general_dilated``."""
  return ConvTranspose(features, kernel_size, strides, dtype=dtype, name=name)
