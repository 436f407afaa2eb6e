"""The players as Flax Linen modules: the paper's MLP generator and maxout discriminator,
and a DCGAN-style convolutional pair (BatchNorm in G).

All take and return flat feature vectors ([B, features]); the conv players reshape to
``image_shape`` inside. Every player is called as ``module.apply(variables, inputs,
train=bool, ...)``. Widths, pieces, activations, dropout rates and initialisation scales
are attributes. The discriminators sow their last hidden layer as ``("intermediates",
"features")`` (``apply(..., mutable=["intermediates"])`` returns it: features for probes;
the steps never ask, so it costs nothing there). ``dtype`` is the compute dtype (parameters
stay float32); ``kernels`` picks the products' implementation (``gan_jax.kernels``; "auto"
follows the step).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import kernels as kernels_lib

Dtype = Any

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "leaky_relu": lambda x: nn.leaky_relu(x, 0.2),
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "linear": lambda x: x,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in ACTIVATIONS:
    raise ValueError(f"Unknown activation {name!r}; use one of {sorted(ACTIVATIONS)}.")
  return ACTIVATIONS[name]


def symmetric_uniform(scale: float) -> Callable[..., jax.Array]:
  """Initializer drawing from U(-scale, scale), as pylearn2's ``irange``."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)

  return init


def dropout(x: jax.Array, keep: float, key: jax.Array, kernels: ModuleType = kernels_lib.plain
            ) -> jax.Array:
  """Inverted dropout: keep each element with probability ``keep`` (a packed-bit mask,
  ``kernels.plain.bernoulli_mask``), scaled by 1 / the probability realised."""
  if keep >= 1.0:
    return x
  mask, realised = kernels.bernoulli_mask(key, keep, x.shape)
  return jnp.where(mask, x * jnp.asarray(1.0 / realised, x.dtype), jnp.zeros((), x.dtype))


def dense(features: int, dtype: Dtype, kernels: ModuleType = kernels_lib.plain, **kwargs
          ) -> nn.Dense:
  """``nn.Dense`` computing in ``dtype``: float32, or bfloat16 products with float32
  results and gradients (``kernels.bf16_dot_general``); parameters are float32 either way."""
  if jnp.dtype(dtype) == jnp.bfloat16:
    return nn.Dense(features, dtype=jnp.float32, dot_general=kernels.bf16_dot_general, **kwargs)
  return nn.Dense(features, dtype=dtype, **kwargs)


class MLPGenerator(nn.Module):
  """G(z): Dense/activation layers, then a Dense output layer with its own activation.

  Paper's MNIST G: ``hidden=(1200, 1200)``, ReLU, 784 sigmoid outputs, weights
  U(±0.05). The output layer's bias is ``output/bias``, so that it can be set from
  the data's marginals (``gan_jax.init_state(g_output_bias=...)``).
  """

  output_dim: int = 784
  hidden: Sequence[int] = (1200, 1200)
  activation: str = "relu"
  output_activation: str = "sigmoid"
  init_scale: float = 0.05
  dtype: Dtype = jnp.float32
  kernels: str = "auto"

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool = False) -> jax.Array:
    del train  # [B, latent] -> [B, output_dim]; no layer behaves differently in training
    k = kernels_lib.get(self.kernels)
    init = symmetric_uniform(self.init_scale)
    h = z
    for i, width in enumerate(self.hidden):
      h = activation(self.activation)(
          dense(width, self.dtype, k, kernel_init=init, name=f"hidden_{i}")(h))
    out = dense(self.output_dim, self.dtype, k, kernel_init=init, name="output")(h)
    return activation(self.output_activation)(out.astype(jnp.float32))


class MaxoutDiscriminator(nn.Module):
  """D(x) as a logit: dropout, then maxout (or plain) hidden layers, then one linear unit.

  Paper's MNIST D: ``hidden=(240, 240)``, ``pieces=5``, weights U(±0.005),
  dropout keep 0.8 on the input and 0.5 on each hidden layer's input.
  ``activation="maxout"`` takes the max over ``pieces`` linear pieces per unit;
  any other activation name makes plain layers. Dropout runs only with
  ``train=True`` and needs the ``"dropout"`` rng. ``minibatch_std=n > 0`` gives the last
  hidden layer one more input, the spread of the layer below across each group of n
  consecutive examples (Karras et al. 2018): a batch of too-similar samples shows in it.
  The groups never straddle data and samples when the batch is a multiple of n.
  ``minibatch_features=b > 0`` gives it b more inputs, minibatch discrimination (Salimans et
  al. 2016): for each example, how close it lies to the others of its batch in b learned
  projections of ``minibatch_dims`` dimensions (``batch_similarity``), so that a mode that G
  over-produces shows as a crowd. The steps run D on data and on samples apart.
  ``pack=p > 1`` makes D judge p consecutive examples at once (PacGAN, Lin et al. 2018):
  their pixels side by side as one input, one logit for the pack, given to each of its
  examples; a G that repeats itself is easier to tell apart in packs. The same products per
  example in the first layer, 1/p of them above it.
  ``features_out=True`` returns ``{"logit": [B], "features": [B, hidden[-1]]}``, the last
  hidden layer beside the logit, for losses that read it (``losses.WithFeatureMatching``).
  """

  hidden: Sequence[int] = (240, 240)
  pieces: int = 5
  activation: str = "maxout"
  init_scale: float = 0.005
  input_keep: float = 0.8
  hidden_keep: float = 0.5
  minibatch_std: int = 0
  minibatch_features: int = 0
  minibatch_dims: int = 4
  pack: int = 1
  features_out: bool = False
  dtype: Dtype = jnp.float32
  kernels: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> Any:  # [B, F] -> [B]
    k = kernels_lib.get(self.kernels)
    init = symmetric_uniform(self.init_scale)
    drops = train and min(self.input_keep, self.hidden_keep) < 1
    drop_key = self.make_rng("dropout") if drops else None
    rows = x.shape[0]
    h = pack_rows(x, self.pack).astype(self.dtype)
    for i, width in enumerate(self.hidden):
      extra = []  # batch statistics of the layer below (before dropout), for the last layer
      if self.minibatch_std and i == len(self.hidden) - 1:
        extra.append(group_spread(h, self.minibatch_std))
      if self.minibatch_features and i == len(self.hidden) - 1:
        m = dense(self.minibatch_features * self.minibatch_dims, self.dtype, k,
                  kernel_init=nn.initializers.normal(0.05), use_bias=False,
                  name="minibatch_projection")(h)
        extra.append(batch_similarity(m.reshape(h.shape[0], self.minibatch_features,
                                                self.minibatch_dims)).astype(h.dtype))
      if drop_key is not None:
        h = dropout(h, self.input_keep if i == 0 else self.hidden_keep,
                    jax.random.fold_in(drop_key, i), k)
      if extra:
        h = jnp.concatenate([h, *extra], axis=-1)
      if self.activation == "maxout":
        z = dense(width * self.pieces, self.dtype, k, kernel_init=init, name=f"hidden_{i}")(h)
        h = k.maxout(z, self.pieces, width)
      else:
        h = activation(self.activation)(
            dense(width, self.dtype, k, kernel_init=init, name=f"hidden_{i}")(h))
    self.sow("intermediates", "features", h)  # the last hidden layer, for probes (no-op in steps)
    features = h
    if drop_key is not None and self.hidden:
      h = dropout(h, self.hidden_keep, jax.random.fold_in(drop_key, len(self.hidden)), k)
    logit = dense(1, self.dtype, k, kernel_init=init, name="output")(h)
    logit = jnp.repeat(logit[..., 0].astype(jnp.float32), self.pack)[:rows]
    if not self.features_out:
      return logit
    return {"logit": logit,
            "features": jnp.repeat(features.astype(jnp.float32), self.pack, axis=0)[:rows]}


def pack_rows(x: jax.Array, pack: int) -> jax.Array:
  """[B, F] -> [B / pack, pack * F]: each ``pack`` consecutive rows side by side. A batch
  smaller than one pack (a shape check, an initialisation) is repeated to fill it."""
  if pack == 1:
    return x
  if x.shape[0] < pack:
    x = jnp.concatenate([x] * -(-pack // x.shape[0]))[:pack]
  if x.shape[0] % pack:
    raise ValueError(f"pack={pack} needs a batch that is a multiple of it; this one has "
                     f"{x.shape[0]} rows. Choose a batch size divisible by {pack}.")
  return x.reshape(x.shape[0] // pack, pack * x.shape[-1])


def group_spread(h: jax.Array, group: int) -> jax.Array:
  """[B, F] -> [B, 1]: the standard deviation of each feature across the example's group of
  ``group`` consecutive rows, averaged over the features (the whole batch if smaller)."""
  n = min(group, h.shape[0])
  if h.shape[0] % n:
    raise ValueError(f"minibatch_std={group} needs a batch that is a multiple of it; this "
                     f"one has {h.shape[0]} rows. Choose a batch size divisible by {group}.")
  g = h.astype(jnp.float32).reshape(-1, n, h.shape[-1])
  spread = jnp.sqrt(jnp.var(g, axis=1) + 1e-8).mean(-1)  # [B / n]
  return jnp.repeat(spread, n)[:, None].astype(h.dtype)


def batch_similarity(m: jax.Array) -> jax.Array:
  """[B, b, d] -> [B, b]: for each example and projection, the mean over the other examples
  of exp(-L1 distance) between their d-vectors (1: all alike; 0: all far apart)."""
  m = m.astype(jnp.float32)
  n = m.shape[0]
  close = jnp.exp(-jnp.sum(jnp.abs(m[:, None] - m[None]), axis=-1))  # [B, B, b]
  return (jnp.sum(close, axis=1) - 1.0) / max(n - 1, 1)  # less each example's own 1


class ConvPlayer(nn.Module):
  """The settings both conv players share: the image shape (H, W, C), the width (G's last
  hidden layer and D's first have ``features`` channels), the compute dtype, the kernel
  set, and the axis BatchNorm averages its batch statistics over (None: a step with an
  ``axis_name`` sets it, so data-parallel training normalises by the whole batch)."""

  image_shape: Sequence[int] = (28, 28, 1)
  features: int = 64
  dtype: Dtype = jnp.float32
  kernels: str = "auto"
  axis_name: str | None = None


class ConvGenerator(ConvPlayer):
  """DCGAN-style G: Dense -> [H/4, W/4, 2f] -> BatchNorm/ReLU -> two stride-2 transposed
  convolutions (BatchNorm/ReLU between) -> sigmoid, returned flat ``[B, H*W*C]``.

  ``train=True`` normalises by the batch's statistics and updates ``batch_stats``;
  ``train=False`` uses the running averages.
  """

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool = False) -> jax.Array:
    h, w, c = self.image_shape
    if h % 4 or w % 4:
      raise ValueError(f"ConvGenerator.image_shape is {tuple(self.image_shape)}; its height and "
                       f"width must be multiples of 4.")
    k = kernels_lib.get(self.kernels)

    def norm(name):
      return nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype,
                          axis_name=self.axis_name, name=name)

    x = nn.Dense(h // 4 * w // 4 * 2 * self.features, dtype=self.dtype, name="project")(z)
    x = nn.relu(norm("bn_0")(x.reshape(z.shape[0], h // 4, w // 4, 2 * self.features)))
    x = k.conv_transpose(self.features, (4, 4), (2, 2), dtype=self.dtype, name="up_1")(x)
    x = nn.relu(norm("bn_1")(x))
    x = k.conv_transpose(c, (4, 4), (2, 2), dtype=self.dtype, name="output")(x)
    return nn.sigmoid(x.astype(jnp.float32)).reshape(z.shape[0], h * w * c)


class ConvDiscriminator(ConvPlayer):
  """DCGAN-style D on flat inputs: reshape to ``image_shape``, two stride-2 4x4
  convolutions with leaky ReLU, one linear unit -> a logit ``[B]``."""

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    del train
    b = x.shape[0]
    h = x.reshape((b,) + tuple(self.image_shape)).astype(self.dtype)
    conv = functools.partial(nn.Conv, kernel_size=(4, 4), strides=(2, 2), dtype=self.dtype,
                             conv_general_dilated=kernels_lib.get(self.kernels)
                             .conv_general_dilated)
    h = nn.leaky_relu(conv(self.features, name="conv_0")(h), 0.2)
    h = nn.leaky_relu(conv(2 * self.features, name="conv_1")(h), 0.2)
    self.sow("intermediates", "features", h.reshape(b, -1))
    logit = nn.Dense(1, dtype=self.dtype, name="output")(h.reshape(b, -1))
    return logit[..., 0].astype(jnp.float32)


def marginal_output_bias(data_mean: np.ndarray, eps: float = 1e-7) -> np.ndarray:
  """Sigmoid-output bias that makes G's initial output the data's marginal means:
  logit(clip(mean, eps, 1 - eps)) per feature, as the authors initialised G."""
  m = np.clip(np.asarray(data_mean, np.float64), eps, 1.0 - eps)
  return np.log(m / (1.0 - m)).astype(np.float32)
