"""Conditional players, the label given to both, as Flax modules. Both take ``cond``: integer
labels ``[B]``.

``model.name = "conditional_mlp_maxout"``: Mirza & Osindero (2014)'s players.
G: z -> 200 ReLU and the one-hot label -> 1000 ReLU, joined -> 1200 ReLU -> 784 sigmoid.
D: x -> maxout 240 x 5 and the label -> maxout 50 x 5, joined -> maxout 240 x 4 -> 1 logit.
Dropout as the unconditional run's D (keep 0.8 on pixels, 0.5 on hidden units) and 0.5 on
G's hidden units in training.

``model.name = "label_concat"``: the unconditional run's own players with the one-hot label
joined to their inputs (the paper's section 7: c as an input of G and of D): G on [z, label],
D on [x, label], the label never dropped out (D's pixels keep ``pixel_keep``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import kernels as kernels_lib, players
from gan_jax.players import dense, dropout, symmetric_uniform
from gan_jax.run import build
from gan_jax.state import GAN, GANState, init_state

NUM_CLASSES = 10


def _one_hot(cond: jax.Array, num_classes: int, dtype: Any) -> jax.Array:
  if cond.ndim != 1 or not jnp.issubdtype(cond.dtype, jnp.integer):
    raise ValueError(f"cond has shape {tuple(cond.shape)} and dtype {cond.dtype}; the "
                     f"conditional players take integer labels [B] in [0, {num_classes}).")
  if not isinstance(cond, jax.core.Tracer) and cond.size and (
      int(cond.min()) < 0 or int(cond.max()) >= num_classes):
    # one_hot would give an all-zero row: a silent unconditional sample. Concrete labels are
    # checked here; under jit the data pipeline's labels are in range by construction.
    raise ValueError(f"cond holds labels {int(cond.min())}..{int(cond.max())}; the conditional "
                     f"players take labels in [0, {num_classes}). Pass digit labels 0-9.")
  return jax.nn.one_hot(cond, num_classes, dtype=dtype)


class ConditionalGenerator(nn.Module):
  """G(z, label): two input branches, a joint hidden layer, sigmoid outputs."""

  output_dim: int = 784
  num_classes: int = NUM_CLASSES
  z_hidden: int = 200
  cond_hidden: int = 1000
  joint_hidden: int = 1200
  hidden_keep: float = 0.5
  init_scale: float = 0.05
  dtype: Any = jnp.float32
  kernels: str = "auto"

  @nn.compact
  def __call__(self, z: jax.Array, *, cond: jax.Array, train: bool = False) -> jax.Array:
    k = kernels_lib.get(self.kernels)
    init = symmetric_uniform(self.init_scale)
    layer = lambda n, name: dense(n, self.dtype, k, kernel_init=init, name=name)  # noqa: E731
    h = jnp.concatenate([nn.relu(layer(self.z_hidden, "z_hidden")(z)),
                         nn.relu(layer(self.cond_hidden, "cond_hidden")(
                             _one_hot(cond, self.num_classes, z.dtype)))], axis=-1)
    drop = train and self.hidden_keep < 1.0
    key = self.make_rng("dropout") if drop else None
    if key is not None:
      h = dropout(h, self.hidden_keep, jax.random.fold_in(key, 0), k)
    h = nn.relu(layer(self.joint_hidden, "joint_hidden")(h))
    if key is not None:
      h = dropout(h, self.hidden_keep, jax.random.fold_in(key, 1), k)
    return nn.sigmoid(layer(self.output_dim, "output")(h).astype(jnp.float32))


class ConditionalDiscriminator(nn.Module):
  """D(x, label) as a logit: maxout branches for the pixels and the label, a joint maxout."""

  num_classes: int = NUM_CLASSES
  x_hidden: int = 240
  cond_hidden: int = 50
  joint_hidden: int = 240
  pieces: int = 5
  joint_pieces: int = 4
  input_keep: float = 0.8
  hidden_keep: float = 0.5
  init_scale: float = 0.005
  dtype: Any = jnp.float32
  kernels: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, cond: jax.Array, train: bool = False) -> jax.Array:
    k = kernels_lib.get(self.kernels)
    init = symmetric_uniform(self.init_scale)

    def maxout(h, width, pieces, name):
      return k.maxout(dense(width * pieces, self.dtype, k, kernel_init=init, name=name)(h),
                      pieces, width)

    key = self.make_rng("dropout") if train else None
    drop = lambda h, keep, i: (h if key is None else  # noqa: E731
                               dropout(h, keep, jax.random.fold_in(key, i), k))
    x = drop(x.astype(self.dtype), self.input_keep, 0)
    y = _one_hot(cond, self.num_classes, self.dtype)
    h = jnp.concatenate([maxout(x, self.x_hidden, self.pieces, "x_hidden"),
                         maxout(y, self.cond_hidden, self.pieces, "cond_hidden")], axis=-1)
    h = maxout(drop(h, self.hidden_keep, 1), self.joint_hidden, self.joint_pieces, "joint_hidden")
    h = drop(h, self.hidden_keep, 2)
    return dense(1, self.dtype, k, kernel_init=init, name="output")(h)[..., 0].astype(jnp.float32)


class LabelledGenerator(players.MLPGenerator):
  """``players.MLPGenerator`` on [z, one-hot label]; parameters named as the unconditional G's
  (``output/bias`` included)."""

  num_classes: int = NUM_CLASSES

  def __call__(self, z: jax.Array, *, cond: jax.Array, train: bool = False) -> jax.Array:
    y = _one_hot(cond, self.num_classes, z.dtype)
    return super().__call__(jnp.concatenate([z, y], axis=-1), train=train)


class LabelledDiscriminator(players.MaxoutDiscriminator):
  """``players.MaxoutDiscriminator`` on [x, one-hot label]: the pixels keep ``pixel_keep`` in
  training, the label is never dropped (build it with ``input_keep=1.0``)."""

  num_classes: int = NUM_CLASSES
  pixel_keep: float = 0.8

  def __call__(self, x: jax.Array, *, cond: jax.Array, train: bool) -> jax.Array:
    x = x.astype(self.dtype)
    if train and self.pixel_keep < 1.0:
      x = dropout(x, self.pixel_keep, self.make_rng("dropout"), kernels_lib.get(self.kernels))
    y = _one_hot(cond, self.num_classes, self.dtype)
    return super().__call__(jnp.concatenate([x, y], axis=-1), train=train)


def make_players(m: Any, output_dim: int) -> tuple[nn.Module, nn.Module]:
  """(G, D) of ``config.model`` by its ``name``."""
  dtype_name = m.get("dtype", "float32")
  g, d, dtype = m.generator, m.discriminator, build.compute_dtype(dtype_name)
  if m.name == "label_concat":
    return (build.make_generator(g, output_dim, dtype_name, LabelledGenerator),
            build.make_discriminator(d, dtype_name, LabelledDiscriminator, input_keep=1.0,
                                     pixel_keep=d.input_keep))
  return (
      ConditionalGenerator(output_dim=output_dim, z_hidden=g.z_hidden, cond_hidden=g.cond_hidden,
                           joint_hidden=g.joint_hidden, hidden_keep=g.hidden_keep,
                           init_scale=g.init_scale, dtype=dtype),
      ConditionalDiscriminator(x_hidden=d.x_hidden, cond_hidden=d.cond_hidden,
                               joint_hidden=d.joint_hidden, pieces=d.pieces,
                               joint_pieces=d.joint_pieces, input_keep=d.input_keep,
                               hidden_keep=d.hidden_keep, init_scale=d.init_scale, dtype=dtype))


def make_gan(configs: Sequence[Any], dataset: Any) -> GAN:
  """The unconditional run's spec (optimizers, losses, EMA, schedule) with the conditional
  players of ``config.model``."""
  config = configs[0]
  return build.make_group_gan(list(configs), data_dim=dataset.dim,
                              batches_per_epoch=len(dataset.train) // config.batch_size,
                              players=make_players(config.model, dataset.dim))


def initial_state(config: Any, dataset: Any, gan: GAN) -> GANState:
  """A replica's initial state, G's output bias from the pixels' marginals as the unconditional
  run's; the example pairs an image with its label."""
  bias = players.marginal_output_bias(dataset.train.mean(0) / 255.0)
  example = (dataset.train[:1], np.asarray(dataset.train_labels[:1], np.int32))
  return init_state(gan, jax.random.fold_in(jax.random.key(config.seed), 0), example,
                    g_output_bias=bias, hparams=build.replica_hparams(config))
