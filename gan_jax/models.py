"""Flax Linen players: the paper's MLP generator and maxout discriminator, and a small
DCGAN-style convolutional pair (BatchNorm in G).

All work on flat feature vectors ([B, features]); image data is flattened by
the input pipeline and the conv players reshape to ``image_shape`` inside.
Every player is called as ``module.apply(variables, inputs, train=bool, ...)``.
Widths, depths, maxout pieces, activations, dropout rates and initialisation
scales are attributes, so the toy problems reuse the same modules at tiny sizes.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Dtype = Any

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "leaky_relu": lambda x: nn.leaky_relu(x, 0.2),
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "linear": lambda x: x,
}


def _activation(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in _ACTIVATIONS:
    raise ValueError(f"Unknown activation {name!r}; use one of {sorted(_ACTIVATIONS)}.")
  return _ACTIVATIONS[name]


def symmetric_uniform(scale: float) -> Callable[..., jax.Array]:
  """Initializer drawing from U(-scale, scale), as pylearn2's ``irange``."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)

  return init


# --- Dropout with packed random bits ---------------------------------------
#
# On CPU the PRNG is a large share of a training step: the paper's D draws
# ~250k mask elements per iteration. jax.random.bernoulli spends 32 random
# bits on each; a keep probability of 0.5 needs one, 0.75 needs two. We draw
# uint32 words and slice each into 32 // width fields of `width` bits, with the
# narrowest width that represents the keep probability exactly (16 bits
# otherwise, an error below 1e-5). The rescaling uses the probability actually
# realised, so the layer stays unbiased.


def mask_bit_width(keep: float) -> int:
  """Bits of randomness per mask element for keep probability ``keep``."""
  for width in (1, 2, 4, 8, 16):
    scaled = keep * (1 << width)
    if abs(scaled - round(scaled)) < 1e-9:
      return width
  return 16


def bernoulli_mask(key: jax.Array, keep: float, shape: Sequence[int]) -> tuple[jax.Array, float]:
  """Boolean mask with P(True) ~= keep, and the exact probability realised."""
  width = mask_bit_width(keep)
  threshold = int(round(keep * (1 << width)))
  per_word = 32 // width
  size = math.prod(shape)
  if threshold == 1 << width:  # keep rounds to 1
    return jnp.ones(shape, bool), 1.0
  words = jax.random.bits(key, (-(-size // per_word),), jnp.uint32)
  if width in (8, 16):
    # Whole bytes: a bitcast splits each word into its fields, low bits first as the
    # shifts below do on a little-endian machine (the same mask bit for bit), and
    # XLA:CPU reads them as a plain uint8/uint16 array instead of working out each
    # element's word and shift (the paper's D input keeps 0.8: 16-bit fields).
    field_dtype = jnp.uint16 if width == 16 else jnp.uint8
    fields = lax.bitcast_convert_type(words, field_dtype)  # [words, per_word]
  else:
    field_dtype = jnp.uint32
    shifts = jnp.arange(0, 32, width, dtype=jnp.uint32)
    fields = (words[:, None] >> shifts) & jnp.uint32((1 << width) - 1)  # [words, per_word]
  mask = fields.reshape(-1)[:size].reshape(shape) < field_dtype(threshold)
  return mask, threshold / (1 << width)


def dropout(x: jax.Array, keep: float, key: jax.Array) -> jax.Array:
  """Inverted dropout: keep each element with probability ``keep``, scale by 1/keep."""
  if keep >= 1.0:
    return x
  mask, realised = bernoulli_mask(key, keep, x.shape)
  return jnp.where(mask, x * jnp.asarray(1.0 / realised, x.dtype), jnp.zeros((), x.dtype))


def _maxout_fold(z: jax.Array, pieces: int, width: int) -> jax.Array:
  """The max over ``pieces`` piece-major slabs of z [..., pieces * width] (a NaN in any
  slab propagates)."""
  h = z[..., :width]
  for p in range(1, pieces):
    zp = z[..., p * width:(p + 1) * width]
    h = jnp.where((zp > h) | jnp.isnan(zp), zp, h)
  return h


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _maxout(z: jax.Array, pieces: int, width: int) -> jax.Array:
  """Max over ``pieces`` piece-major slabs of z [..., pieces * width] -> [..., width].

  Its gradient goes to the slab that holds the max (the first on ties, a NaN's slab if
  any), in one pass (a select per slab, concatenated) from an int8 index that the forward
  pass computes with ``lax.argmax``. Why not the alternatives:
  - differentiating the fold of maxima made XLA:CPU pad and add each slab's gradient
    (six passes of [B, 1200] per iteration of the paper's D);
  - an index built by a fold of selects was fused into each slab's select, so every
    slab's gradient re-read all five slabs; argmax, a reduction, is computed once;
  - jnp.max's gradient divides by the count of elements equal to the max, which
    unoptimised XLA builds can make 0.
  """
  return _maxout_fold(z, pieces, width)


def _maxout_fwd(z, pieces, width):
  slabs = z.reshape(z.shape[:-1] + (pieces, width))
  index = lax.argmax(slabs, z.ndim - 1, jnp.int32)
  return _maxout_fold(z, pieces, width), index.astype(jnp.int8 if pieces <= 127 else jnp.int32)


def _maxout_bwd(pieces, width, index, g):
  del width
  zero = jnp.zeros((), g.dtype)
  return (jnp.concatenate([jnp.where(index == p, g, zero) for p in range(pieces)], axis=-1),)


_maxout.defvjp(_maxout_fwd, _maxout_bwd)


# --- bfloat16 matmuls with float32 results ----------------------------------
#
# The compute-dtype option of the players: bfloat16 operands, float32 accumulation
# and results. CPUs with bf16 matrix units (AMX, AVX512_BF16) and accelerators run
# such products several times faster than float32 ones, while activations, losses,
# parameters and their gradients stay float32 (a dot with bfloat16 outputs instead
# ran at a fifth of that speed on a CPU with AMX: XLA:CPU took a generic path).


def _dense_dims(x: jax.Array) -> tuple:
  return (((x.ndim - 1,), (0,)), ((), ()))


@jax.custom_vjp
def _bf16_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  return lax.dot_general(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), _dense_dims(x),
                         preferred_element_type=jnp.float32)


def _bf16_matmul_fwd(x, w):
  xb, wb = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
  y = lax.dot_general(xb, wb, _dense_dims(x), preferred_element_type=jnp.float32)
  return y, (xb, wb, jnp.zeros((0,), x.dtype), jnp.zeros((0,), w.dtype))


def _bf16_matmul_bwd(res, ct):
  xb, wb, x_like, w_like = res
  ctb = ct.astype(jnp.bfloat16)
  # dx = ct @ w^T and dw = x^T @ ct (rows of every leading axis), accumulated in float32.
  dx = lax.dot_general(ctb, wb, (((ct.ndim - 1,), (1,)), ((), ())),
                       preferred_element_type=jnp.float32)
  x2, ct2 = xb.reshape(-1, xb.shape[-1]), ctb.reshape(-1, ctb.shape[-1])
  return dx.astype(x_like.dtype), _weight_gradient(x2, ct2).astype(w_like.dtype)


def _weight_gradient(x: jax.Array, ct: jax.Array) -> jax.Array:
  """x^T @ ct for bfloat16 x [N, I] and ct [N, O], accumulated in float32.

  XLA:CPU runs a product that contracts both operands' first axis with a generic kernel
  that first converts bfloat16 operands to float32, so the bf16 units sit idle: 0.93 ms
  for N = 100, I = O = 1200 on a CPU with AMX. As x^T [I, N'] @ ct [N', O], the rows
  padded with zeros to N' a multiple of 32, YNNPACK takes it: 0.54 ms. The padding (at
  least one row) also keeps XLA from folding the transpose back into the product.
  Other backends get the plain product.

  The transpose and the padding move the operands' bits as uint16: XLA:CPU computes a
  bfloat16 transpose or pad in float32, converting on the way in and out.
  """
  dims = (((0,), (0,)), ((), ()))
  if jax.default_backend() != "cpu":
    return lax.dot_general(x, ct, dims, preferred_element_type=jnp.float32)
  pad = 32 - x.shape[0] % 32
  zero = jnp.zeros((), jnp.uint16)
  xt = lax.pad(lax.bitcast_convert_type(x, jnp.uint16).T, zero, ((0, 0, 0), (0, pad, 0)))
  ctp = lax.pad(lax.bitcast_convert_type(ct, jnp.uint16), zero, ((0, pad, 0), (0, 0, 0)))
  return lax.dot_general(lax.bitcast_convert_type(xt, x.dtype),
                         lax.bitcast_convert_type(ctp, ct.dtype), (((1,), (0,)), ((), ())),
                         preferred_element_type=jnp.float32)


_bf16_matmul.defvjp(_bf16_matmul_fwd, _bf16_matmul_bwd)


def bf16_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """A ``dot_general`` for ``flax.linen.Dense(dot_general=...)``: bfloat16 operands, float32
  products, and float32 gradients for float32 parameters (the backward products are
  bfloat16 too). Only Dense's form: the last axis of ``lhs`` against the first of ``rhs``."""
  del precision, preferred_element_type
  if rhs.ndim != 2 or dimension_numbers != _dense_dims(lhs):
    raise ValueError(f"bf16_dot_general supports Dense's product only (lhs [..., K] x rhs "
                     f"[K, N]); got dimension_numbers {dimension_numbers}.")
  return _bf16_matmul(lhs, rhs)


def dense(features: int, dtype: Dtype, **kwargs) -> nn.Dense:
  """``nn.Dense`` computing in ``dtype``: float32, or bfloat16 products with float32
  results (``bf16_dot_general``); parameters are float32 either way."""
  if jnp.dtype(dtype) == jnp.bfloat16:
    return nn.Dense(features, dtype=jnp.float32, dot_general=bf16_dot_general, **kwargs)
  return nn.Dense(features, dtype=dtype, **kwargs)


class MLPGenerator(nn.Module):
  """G(z): Dense/activation layers, then a Dense output layer with its own activation.

  Paper's MNIST G: ``hidden=(1200, 1200)``, ReLU, 784 sigmoid outputs, weights
  U(±0.05). The output layer's bias is named ``output/bias`` so that it can be
  set from the data's marginals (see ``gan_jax.init_state``).
  """

  output_dim: int = 784
  hidden: Sequence[int] = (1200, 1200)
  activation: str = "relu"
  output_activation: str = "sigmoid"
  init_scale: float = 0.05
  dtype: Dtype = jnp.float32  # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool = False) -> jax.Array:
    del train  # [B, latent] -> [B, output_dim]; no layer behaves differently in training
    init = symmetric_uniform(self.init_scale)
    act = _activation(self.activation)
    h = z
    for i, width in enumerate(self.hidden):
      h = act(dense(width, self.dtype, kernel_init=init, name=f"hidden_{i}")(h))
    out = dense(self.output_dim, self.dtype, kernel_init=init, name="output")(h)
    return _activation(self.output_activation)(out.astype(jnp.float32))


class MaxoutDiscriminator(nn.Module):
  """D(x) as a logit: dropout, then maxout (or plain) hidden layers, then one linear unit.

  Paper's MNIST D: ``hidden=(240, 240)``, ``pieces=5``, weights U(±0.005),
  dropout keep 0.8 on the input and 0.5 on each hidden layer's input.
  ``activation="maxout"`` takes the max over ``pieces`` linear pieces per unit;
  any other activation name makes plain layers (``pieces`` is then unused).
  Dropout runs only with ``train=True`` and needs the ``"dropout"`` rng.
  """

  hidden: Sequence[int] = (240, 240)
  pieces: int = 5
  activation: str = "maxout"
  init_scale: float = 0.005
  input_keep: float = 0.8
  hidden_keep: float = 0.5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:  # [B, F] -> [B]
    init = symmetric_uniform(self.init_scale)
    drop_key = self.make_rng("dropout") if train and min(self.input_keep, self.hidden_keep) < 1 else None
    h = x.astype(self.dtype)
    for i, width in enumerate(self.hidden):
      keep = self.input_keep if i == 0 else self.hidden_keep
      if drop_key is not None:
        h = dropout(h, keep, jax.random.fold_in(drop_key, i))
      if self.activation == "maxout":
        z = dense(width * self.pieces, self.dtype, kernel_init=init, name=f"hidden_{i}")(h)
        h = _maxout(z, self.pieces, width)
      else:
        h = _activation(self.activation)(
            dense(width, self.dtype, kernel_init=init, name=f"hidden_{i}")(h))
    if drop_key is not None and self.hidden:
      h = dropout(h, self.hidden_keep, jax.random.fold_in(drop_key, len(self.hidden)))
    logit = dense(1, self.dtype, kernel_init=init, name="output")(h)
    return logit[..., 0].astype(jnp.float32)


# --- Convolutions with their kernel gradient as one matmul ---------------------
#
# XLA:CPU lowers the kernel gradient of a strided or transposed convolution (a
# convolution that contracts the batch axis, with a dilated kernel window) to a
# naive loop: 2 s of the 2.9 s of one iteration of the DCGAN-style pair below at
# MNIST's size, batch 64. Here the forward pass and the input gradient stay XLA's
# convolutions, and the kernel gradient is the padded input's patches (one strided
# slice per kernel tap) times the output gradient, a matmul.

_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(x, kernel, strides, pads, lhs_dilation):
  return lax.conv_general_dilated(x, kernel, strides, pads, lhs_dilation=lhs_dilation,
                                  dimension_numbers=_NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_matmul_grad(x, kernel, strides, pads, lhs_dilation):
  return _conv(x, kernel, strides, pads, lhs_dilation)


def _conv_matmul_grad_fwd(x, kernel, strides, pads, lhs_dilation):
  return _conv(x, kernel, strides, pads, lhs_dilation), (x, kernel)


def _conv_matmul_grad_bwd(strides, pads, lhs_dilation, res, g):
  x, kernel = res
  _, input_vjp = jax.vjp(lambda x: _conv(x, kernel, strides, pads, lhs_dilation), x)
  (dx,) = input_vjp(g)
  kh, kw, c, o = kernel.shape
  if strides == (1, 1) and lhs_dilation != (1, 1):
    # A transposed convolution: tap (i, j) pairs input pixel (h, w) with output pixel
    # (lo + s h - i, lo + s w - j); slicing the output gradient at those pixels keeps the
    # patches at the (smaller) input's size and skips the dilation's zeros.
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
    dk = dk.reshape(c, kh, kw, o).transpose(1, 2, 0, 3)
  else:
    # Tap (i, j) of a strided convolution: a strided slice of the padded input.
    (sh, sw), (ho, wo) = strides, g.shape[1:3]
    config = [(0, 0, 0)] + [(lo, hi, d - 1) for (lo, hi), d in zip(pads, lhs_dilation)] + [
        (0, 0, 0)]
    xp = lax.pad(x, jnp.zeros((), x.dtype), config)
    taps = [lax.slice(xp, (0, i, j, 0), (xp.shape[0], i + sh * (ho - 1) + 1,
                                         j + sw * (wo - 1) + 1, c), (1, sh, sw, 1))
            for i in range(kh) for j in range(kw)]
    patches = jnp.stack(taps, axis=3).reshape(-1, kh * kw * c)  # [B*ho*wo, taps * c]
    dk = jnp.dot(patches.T, g.reshape(-1, o), preferred_element_type=jnp.float32)
  return dx, dk.reshape(kernel.shape).astype(kernel.dtype)


_conv_matmul_grad.defvjp(_conv_matmul_grad_fwd, _conv_matmul_grad_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated`` with the kernel gradient as a matmul (see above), for
  ``nn.Conv(conv_general_dilated=...)``; forms other than a plain 2-D NHWC/HWIO
  convolution go to lax unchanged."""
  lhs_dilation = tuple(lhs_dilation or (1,) * (lhs.ndim - 2))
  plain = (lhs.ndim == 4 and feature_group_count == 1 and batch_group_count == 1
           and all(d == 1 for d in (rhs_dilation or (1, 1))) and preferred_element_type is None
           and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
           == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC))
  if not plain:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                    rhs_dilation, dimension_numbers, feature_group_count,
                                    batch_group_count, precision, preferred_element_type)
  if isinstance(padding, str):
    dilated = [(n - 1) * d + 1 for n, d in zip(lhs.shape[1:3], lhs_dilation)]
    padding = lax.padtype_to_pads(dilated, rhs.shape[:2], window_strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  return _conv_matmul_grad(lhs, rhs, tuple(window_strides), pads, lhs_dilation)


class ConvTranspose(nn.Module):
  """``nn.ConvTranspose`` (``padding="SAME"``, ``transpose_kernel=False``: the same
  parameters and outputs) computed by ``conv_general_dilated`` above."""

  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int]
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        tuple(self.kernel_size) + (x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    x, kernel, bias = x.astype(self.dtype), kernel.astype(self.dtype), bias.astype(self.dtype)
    pads = []
    for k, s in zip(self.kernel_size, self.strides):  # lax.conv_transpose's "SAME" padding
      total = k + s - 2
      lo = k - 1 if s > k - 1 else -(-total // 2)
      pads.append((lo, total - lo))
    y = conv_general_dilated(x, kernel, (1, 1), pads, lhs_dilation=tuple(self.strides),
                             dimension_numbers=_NHWC)
    return y + bias


class ConvGenerator(nn.Module):
  """DCGAN-style G: Dense -> [H/4, W/4, 2f] -> BatchNorm/ReLU -> two stride-2 transposed
  convolutions (BatchNorm/ReLU between) -> sigmoid, returned flat ``[B, H*W*C]``.

  ``train=True`` normalises by the batch's statistics and updates ``batch_stats``;
  ``train=False`` uses the running averages.
  """

  image_shape: Sequence[int] = (28, 28, 1)
  features: int = 64
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool = False) -> jax.Array:
    h, w, c = self.image_shape
    if h % 4 or w % 4:
      raise ValueError(f"ConvGenerator.image_shape is {tuple(self.image_shape)}; its height and "
                       f"width must be multiples of 4.")
    norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9,  # noqa: E731
                                     dtype=self.dtype, name=name)
    x = nn.Dense(h // 4 * w // 4 * 2 * self.features, dtype=self.dtype, name="project")(z)
    x = nn.relu(norm("bn_0")(x.reshape(z.shape[0], h // 4, w // 4, 2 * self.features)))
    x = ConvTranspose(self.features, (4, 4), (2, 2), dtype=self.dtype, name="up_1")(x)
    x = nn.relu(norm("bn_1")(x))
    x = ConvTranspose(c, (4, 4), (2, 2), dtype=self.dtype, name="output")(x)
    return nn.sigmoid(x.astype(jnp.float32)).reshape(z.shape[0], h * w * c)


class ConvDiscriminator(nn.Module):
  """DCGAN-style D on flat inputs: reshape to ``image_shape``, two stride-2 4x4
  convolutions with leaky ReLU, one linear unit -> a logit ``[B]``."""

  image_shape: Sequence[int] = (28, 28, 1)
  features: int = 64
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    del train
    b = x.shape[0]
    h = x.reshape((b,) + tuple(self.image_shape)).astype(self.dtype)
    conv = functools.partial(nn.Conv, kernel_size=(4, 4), strides=(2, 2), dtype=self.dtype,
                             conv_general_dilated=conv_general_dilated)
    h = nn.leaky_relu(conv(self.features, name="conv_0")(h), 0.2)
    h = nn.leaky_relu(conv(2 * self.features, name="conv_1")(h), 0.2)
    logit = nn.Dense(1, dtype=self.dtype, name="output")(h.reshape(b, -1))
    return logit[..., 0].astype(jnp.float32)


def marginal_output_bias(data_mean: np.ndarray, eps: float = 1e-7) -> np.ndarray:
  """Sigmoid-output bias that makes G's initial output the data's marginal means.

  logit(clip(mean, eps, 1 - eps)) per feature, as the authors initialised G.
  """
  m = np.clip(np.asarray(data_mean, np.float64), eps, 1.0 - eps)
  return np.log(m / (1.0 - m)).astype(np.float32)
