"""The authors' CIFAR-10 players (goodfeli/adversarial cifar10_*.yaml) and the run's GAN spec.

Fully connected: G 100 -> 8000 ReLU -> 8000 sigmoid -> 3072 linear; D maxout 1600x5 ->
maxout 1600x5 -> 1 (the library's ``MaxoutDiscriminator``). Convolutional: the same G up
to its second hidden layer, reshaped to 10x10x80 and a 5x5 transposed convolution of
stride 3 to 32x32x3; D three maxout convolutions (32x2 8x8 pad 4 pool 4/2, 32x2 8x8 pad 3
pool 4/2, 192x2 5x5 pad 3 pool 2/2), maxout 500x5, one unit. G's outputs are linear: the
data are contrast-normalised (``data.gcn``), not pixels in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax import kernels as kernels_lib, players
from gan_jax.run import build
from gan_jax.state import GAN, GANState, init_state

# (channels, pieces, kernel, pad, pool, pool stride) of each maxout convolution.
CONV_LAYERS = ((32, 2, 8, 4, 4, 2), (32, 2, 8, 3, 4, 2), (192, 2, 5, 3, 2, 2))


class Generator(nn.Module):
  """G(z): Dense layers with one activation each, then a linear output: a Dense layer to
  ``prod(image_shape)`` values, or (``deconv`` = (height, width, channels, kernel,
  stride)) a reshape to that grid and a VALID transposed convolution to ``image_shape``."""

  hidden: Sequence[int] = (8000, 8000)
  activations: Sequence[str] = ("relu", "sigmoid")
  image_shape: Sequence[int] = (32, 32, 3)
  deconv: Sequence[int] | None = None
  init_scale: float = 0.05
  output_scale: float = 0.5  # the output layer's U(±scale): the fully connected yaml's .5
  dtype: Any = jnp.float32
  kernels: str = "auto"

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool = False) -> jax.Array:
    del train
    k = kernels_lib.get(self.kernels)
    h = z
    for i, (width, act) in enumerate(zip(self.hidden, self.activations, strict=True)):
      h = players.activation(act)(players.dense(
          width, self.dtype, k, kernel_init=players.symmetric_uniform(self.init_scale),
          name=f"hidden_{i}")(h))
    b = z.shape[0]
    out_init = players.symmetric_uniform(self.output_scale)
    if self.deconv is None:
      out = players.dense(math.prod(self.image_shape), self.dtype, k,
                          kernel_init=out_init, name="output")(h)
      return out.astype(jnp.float32)
    gh, gw, gc, kernel, stride = self.deconv
    grid = h.reshape(b, gh, gw, gc)
    out = nn.ConvTranspose(self.image_shape[-1], (kernel, kernel), (stride, stride),
                           padding="VALID", kernel_init=out_init, dtype=self.dtype,
                           name="output")(grid)
    if tuple(out.shape[1:]) != tuple(self.image_shape):
      raise ValueError(f"Generator.deconv {tuple(self.deconv)} makes images of shape "
                       f"{tuple(out.shape[1:])}, not image_shape {tuple(self.image_shape)}.")
    return out.reshape(b, -1).astype(jnp.float32)


class ConvMaxoutDiscriminator(nn.Module):
  """D(x) as a logit: maxout convolutions with max pooling (``layers``: channels, pieces,
  kernel, pad, pool, stride each), a maxout Dense layer, one linear unit; dropout keep
  ``input_keep`` on the image and ``hidden_keep`` on each later layer's input."""

  layers: Sequence[Sequence[int]] = CONV_LAYERS
  dense_units: int = 500
  dense_pieces: int = 5
  image_shape: Sequence[int] = (32, 32, 3)
  init_scale: float = 0.005
  input_keep: float = 0.8
  hidden_keep: float = 0.5
  dtype: Any = jnp.float32
  kernels: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    k = kernels_lib.get(self.kernels)
    init = players.symmetric_uniform(self.init_scale)
    drop_key = self.make_rng("dropout") if train and min(self.input_keep,
                                                          self.hidden_keep) < 1 else None

    def drop(h, i):
      if drop_key is None:
        return h
      return players.dropout(h, self.input_keep if i == 0 else self.hidden_keep,
                             jax.random.fold_in(drop_key, i), k)

    b = x.shape[0]
    h = x.reshape((b,) + tuple(self.image_shape)).astype(self.dtype)
    for i, (channels, pieces, kernel, pad, pool, stride) in enumerate(self.layers):
      z = nn.Conv(channels * pieces, (kernel, kernel), padding=((pad, pad), (pad, pad)),
                  kernel_init=init, dtype=self.dtype, conv_general_dilated=k.conv_general_dilated,
                  name=f"conv_{i}")(drop(h, i))
      h = nn.max_pool(k.maxout(z, pieces, channels), (pool, pool), (stride, stride))
    h = drop(h.reshape(b, -1), len(self.layers))
    z = players.dense(self.dense_units * self.dense_pieces, self.dtype, k, kernel_init=init,
                      name="hidden")(h)
    h = drop(k.maxout(z, self.dense_pieces, self.dense_units), len(self.layers) + 1)
    logit = players.dense(1, self.dtype, k, kernel_init=init, name="output")(h)
    return logit[..., 0].astype(jnp.float32)


def make_players(config: Any) -> tuple[nn.Module, nn.Module]:
  m = config.model
  dtype = build.compute_dtype(m.get("dtype", "float32"))
  g_cfg, d_cfg = m.generator, m.discriminator
  deconv = tuple(g_cfg.deconv) if g_cfg.get("deconv") else None
  g = Generator(hidden=tuple(g_cfg.hidden), activations=tuple(g_cfg.activations.split(",")),
                deconv=deconv, init_scale=g_cfg.init_scale, output_scale=g_cfg.output_scale,
                dtype=dtype)
  if m.name == "convolutional":
    layers = tuple((c,) + tuple(layer[1:]) for c, layer in
                   zip(d_cfg.conv_channels, CONV_LAYERS, strict=True))
    d = ConvMaxoutDiscriminator(layers=layers,
                                dense_units=d_cfg.hidden[0], dense_pieces=d_cfg.pieces,
                                init_scale=d_cfg.init_scale, input_keep=d_cfg.input_keep,
                                hidden_keep=d_cfg.hidden_keep, dtype=dtype)
  else:
    d = players.MaxoutDiscriminator(hidden=tuple(d_cfg.hidden), pieces=d_cfg.pieces,
                                    init_scale=d_cfg.init_scale, input_keep=d_cfg.input_keep,
                                    hidden_keep=d_cfg.hidden_keep, dtype=dtype)
  return g, d


def make_gan(configs: Sequence[Any], train_size: int) -> GAN:
  """The spec of one config, or of a sweep group's configs."""
  bpe = train_size // configs[0].batch_size
  return build.make_group_gan(list(configs), data_dim=32 * 32 * 3, batches_per_epoch=bpe,
                              players=make_players(configs[0]))


def initial_state(config: Any, gan: GAN) -> GANState:
  return init_state(gan, jax.random.fold_in(jax.random.key(config.seed), 0),
                    jnp.zeros((1, 32 * 32 * 3), jnp.float32),
                    hparams=build.replica_hparams(config))
