"""From a config to a GAN spec: the one place config fields become objects."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from gan_jax import models, optim
from gan_jax.state import GAN

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


def make_gan(config: Any, *, data_dim: int, batches_per_epoch: int) -> GAN:
  """The GAN spec of an experiment config (sections ``model``, ``optimizer``, ``gan``).

  ``batches_per_epoch``: real minibatches in one pass over the training set. Epoch-based
  schedules count optimizer updates: D makes one per minibatch, G one per iteration
  (k minibatches in the alternating mode, one when simultaneous).
  """
  model = config.model
  d_opt_cfg = config.optimizer
  g_opt_cfg = config.get("g_optimizer") or config.optimizer
  k = config.gan.k if config.gan.update_rule == "alternating" else 1
  return GAN(
      generator=make_generator(model.generator, data_dim, model.dtype),
      discriminator=make_discriminator(model.discriminator, model.dtype),
      g_optimizer=optim.make_optimizer(g_opt_cfg, steps_per_epoch=max(batches_per_epoch // k, 1)),
      d_optimizer=optim.make_optimizer(d_opt_cfg, steps_per_epoch=batches_per_epoch),
      latent_dim=model.latent_dim,
      latent_dist=model.latent_dist,
      g_loss=config.gan.g_loss,
      real_label=config.gan.real_label,
      k=config.gan.k,
      update_rule=config.gan.update_rule,
  )
