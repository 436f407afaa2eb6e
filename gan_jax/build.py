"""From a config to a GAN spec: the one place config fields become objects."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gan_jax import models, optim
from gan_jax.state import GAN, GANState, init_state

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def make_generator(cfg: Any, output_dim: int, dtype: str) -> models.MLPGenerator:
  return models.MLPGenerator(output_dim=output_dim, hidden=tuple(cfg.hidden),
                             activation=cfg.activation, output_activation=cfg.output_activation,
                             init_scale=cfg.init_scale, dtype=DTYPES[dtype])


def make_discriminator(cfg: Any, dtype: str) -> models.MaxoutDiscriminator:
  return models.MaxoutDiscriminator(hidden=tuple(cfg.hidden), pieces=cfg.pieces,
                                    activation=cfg.activation, init_scale=cfg.init_scale,
                                    input_keep=cfg.input_keep, hidden_keep=cfg.hidden_keep,
                                    dtype=DTYPES[dtype])


def make_gan(config: Any, *, data_dim: int, batches_per_epoch: int,
             hparams: dict[str, Any] | None = None) -> GAN:
  """The GAN spec of an experiment config (sections ``model``, ``optimizer``, ``gan``).

  ``batches_per_epoch``: real minibatches in one pass over the training set. Epoch-based
  schedules count optimizer updates: D makes one per minibatch, G one per iteration
  (k minibatches in the alternating mode, one when simultaneous).
  ``hparams``: one sweep replica's (possibly traced) values of the vmappable fields,
  as ``gan_jax.sweep.hparams`` gives them; they replace the config's.
  """
  hp = hparams or {}
  model = config.model
  d_opt_cfg = config.optimizer
  g_opt_cfg = config.get("g_optimizer") or config.optimizer
  k = config.gan.k if config.gan.update_rule == "alternating" else 1
  return GAN(
      generator=make_generator(model.generator, data_dim, model.dtype),
      discriminator=make_discriminator(model.discriminator, model.dtype),
      g_optimizer=optim.make_optimizer(g_opt_cfg, steps_per_epoch=max(batches_per_epoch // k, 1),
                                       learning_rate=hp.get("g_learning_rate")),
      d_optimizer=optim.make_optimizer(d_opt_cfg, steps_per_epoch=batches_per_epoch,
                                       learning_rate=hp.get("d_learning_rate")),
      latent_dim=model.latent_dim,
      latent_dist=model.latent_dist,
      g_loss=hp.get("g_loss", config.gan.g_loss),
      real_label=hp.get("real_label", config.gan.real_label),
      k=config.gan.k,
      update_rule=config.gan.update_rule,
  )


def make_gan_and_state(config: Any, dataset: Any) -> tuple[GAN, jax.Array, GANState]:
  """The spec, the run's root key and its initial state, for ``config`` on ``dataset``.

  ``dataset``: a ``gan_jax.data.Dataset`` (flat uint8 images). G's output bias is
  set from the training pixels' marginals when the config asks for it.
  """
  gan = make_gan(config, data_dim=dataset.dim,
                 batches_per_epoch=len(dataset.train) // config.batch_size)
  bias = None
  if config.model.generator.get("output_bias") == "marginals":
    bias = models.marginal_output_bias(dataset.train.mean(0) / 255.0)
  root_key = jax.random.key(config.seed)
  state = init_state(gan, jax.random.fold_in(root_key, 0), dataset.train[:1], g_output_bias=bias)
  return gan, root_key, state
