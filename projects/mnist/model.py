"""The MNIST run's GAN spec and initial state, from its configs and the data set."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from gan_jax import players
from gan_jax.run import build
from gan_jax.state import GAN, GANState, init_state

MODELS = ("mlp_maxout", "conv")


def make_gan(configs: Sequence[Any], dataset: Any) -> GAN:
  """The spec of one config, or of a sweep group's configs (``build.make_group_gan``);
  ``dataset``: a ``projects.mnist.data.Dataset``."""
  bpe = len(dataset.train) // configs[0].batch_size
  model = configs[0].model
  pair = None
  if model.get("name", "mlp_maxout") == "conv":
    kw = dict(image_shape=dataset.image_shape, features=model.get("conv_features", 64),
              dtype=build.compute_dtype(model.get("dtype", "float32")))
    pair = (players.ConvGenerator(**kw), players.ConvDiscriminator(**kw))
  return build.make_group_gan(list(configs), data_dim=dataset.dim, batches_per_epoch=bpe,
                              players=pair)


def initial_state(config: Any, dataset: Any, gan: GAN) -> GANState:
  """A replica's initial state; G's output bias from the training pixels' marginals when the
  config asks for it, as the authors initialised G."""
  bias = None
  mlp = config.model.get("name", "mlp_maxout") != "conv"  # the conv G has no such bias
  if mlp and config.model.generator.get("output_bias") == "marginals":
    bias = players.marginal_output_bias(dataset.train.mean(0) / 255.0)
  return init_state(gan, jax.random.fold_in(jax.random.key(config.seed), 0), dataset.train[:1],
                    g_output_bias=bias, hparams=build.replica_hparams(config))
