"""From a config to a GAN spec: the one place config fields become objects."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gan_jax import kernels, losses, optim, players
from gan_jax.errors import UserError
from gan_jax.state import GAN

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str) -> Any:
  """``config.model.dtype`` as a dtype: "float32", "bfloat16", or "auto" (bfloat16 where the
  default backend multiplies it in hardware, else float32: ``kernels.compute_dtype``)."""
  return DTYPES[kernels.compute_dtype(name, jax.default_backend())]


def make_generator(cfg: Any, output_dim: int, dtype: str, cls: type = players.MLPGenerator
                   ) -> players.MLPGenerator:
  """G from ``config.model.generator``; ``cls``: ``MLPGenerator`` or a subclass of it."""
  return cls(output_dim=output_dim, hidden=tuple(cfg.hidden), activation=cfg.activation,
             output_activation=cfg.output_activation, init_scale=cfg.init_scale,
             dtype=compute_dtype(dtype))


def make_discriminator(cfg: Any, dtype: str, cls: type = players.MaxoutDiscriminator,
                       **replace: Any) -> players.MaxoutDiscriminator:
  """D from ``config.model.discriminator``; ``cls``: ``MaxoutDiscriminator`` or a subclass of
  it, ``replace``: attributes set otherwise than from the config."""
  kwargs = dict(hidden=tuple(cfg.hidden), pieces=cfg.pieces, activation=cfg.activation,
                init_scale=cfg.init_scale, input_keep=cfg.input_keep,
                hidden_keep=cfg.hidden_keep, minibatch_std=cfg.get("minibatch_std", 0),
                minibatch_features=cfg.get("minibatch_features", 0),
                minibatch_dims=cfg.get("minibatch_dims", 4), pack=cfg.get("pack", 1),
                dtype=compute_dtype(dtype))
  return cls(**{**kwargs, **replace})


def make_regularizer(gan_cfg: Any) -> Any:
  """D's regulariser from ``gan.r1_gamma`` / ``gan.gp_weight`` (0 = off; the schema allows one)."""
  if gan_cfg.get("r1_gamma", 0.0):
    return losses.R1(float(gan_cfg.r1_gamma))
  if gan_cfg.get("gp_weight", 0.0):
    return losses.GradientPenalty(float(gan_cfg.gp_weight))
  return None


def make_gan(config: Any, *, data_dim: int, batches_per_epoch: int,
             g_loss: Any = None, d_loss: Any = None, players: tuple[Any, Any] | None = None
             ) -> GAN:
  """The GAN spec of an experiment config (sections ``model``, ``optimizer``, ``gan``).

  ``batches_per_epoch``: real minibatches in one pass over the training set. Epoch-based
  schedules count optimizer updates: D makes one per minibatch, G one per iteration
  (k minibatches in the alternating mode, one when simultaneous).
  ``g_loss`` / ``d_loss`` replace the config's (a sweep group passes the tuple of
  its replicas' losses; each replica's state picks one). ``players``: (G, D) of a project's
  own in place of the MLP players that ``config.model`` describes.
  """
  model = config.model
  d_opt_cfg = config.optimizer
  g_opt_cfg = config.get("g_optimizer") or config.optimizer
  k = config.gan.k if config.gan.update_rule == "alternating" else 1
  dtype = model.get("dtype", "float32")
  g, d = players or (make_generator(model.generator, data_dim, dtype),
                     make_discriminator(model.discriminator, dtype))
  g_loss = config.gan.g_loss if g_loss is None else g_loss
  d_loss = config.gan.get("d_loss", "bce") if d_loss is None else d_loss
  if config.gan.get("feature_matching", 0.0):
    g_loss, d_loss, d = _with_feature_matching(config.gan.feature_matching, g_loss, d_loss, d)
  return GAN(
      generator=g,
      discriminator=d,
      g_optimizer=optim.make_optimizer(g_opt_cfg, steps_per_epoch=max(batches_per_epoch // k, 1)),
      d_optimizer=optim.make_optimizer(d_opt_cfg, steps_per_epoch=batches_per_epoch),
      latent_dim=model.latent_dim,
      latent_dist=model.get("latent_dist", "uniform"),
      g_loss=g_loss,
      d_loss=d_loss,
      d_regularizer=make_regularizer(config.gan),
      real_label=config.gan.real_label,
      ema_decay=config.gan.get("ema_decay", 0.0),
      ema_power=config.gan.get("ema_power", 0.0),
      k=config.gan.k,
      update_rule=config.gan.update_rule,
      grad_norms=config.gan.get("grad_norms", True),
  )


def _with_feature_matching(weight: float, g_loss: Any, d_loss: Any, d: Any) -> tuple:
  """``gan.feature_matching``: G's loss plus the feature-matching term, D's loss on its logit,
  and D giving its features beside it."""
  if isinstance(g_loss, tuple) or isinstance(d_loss, tuple):
    raise UserError("config.gan.feature_matching adds a term to one G loss; replicas of a "
                     "sweep that differ in their losses cannot share it. Sweep the losses "
                     "without it, or give every replica the same losses.")
  if "features_out" not in getattr(d, "__dataclass_fields__", {}):
    raise UserError(f"config.gan.feature_matching reads D's features, but this project's D "
                     f"({type(d).__name__}) has no features_out; set it to 0, or use "
                     f"players.MaxoutDiscriminator.")
  (g_fn,), (d_fn,) = losses.resolve(g_loss, "g"), losses.resolve(d_loss, "d")
  return (losses.WithFeatureMatching(g_fn, float(weight)), losses.OnLogit(d_fn),
          d.clone(features_out=True))


def replica_hparams(config: Any) -> dict[str, Any]:
  """A config's per-replica values, as ``state.set_hparams`` takes them (the losses' choice
  only where the spec holds the losses by name: not with ``gan.feature_matching``)."""
  g_opt = config.get("g_optimizer") or config.optimizer
  losses_by_name = ({} if config.gan.get("feature_matching", 0.0) else
                    {"g_loss": config.gan.g_loss, "d_loss": config.gan.get("d_loss", "bce")})
  return {"real_label": config.gan.real_label, "ema_decay": config.gan.get("ema_decay", 0.0),
          **losses_by_name, "d_learning_rate": config.optimizer.learning_rate,
          "g_learning_rate": g_opt.learning_rate}


def loss_choices(values: list[Any]) -> Any:
  """One loss when all replicas share it, else the tuple of their distinct losses, in order."""
  unique = tuple(dict.fromkeys(values))
  return unique[0] if len(unique) == 1 else unique


def make_group_gan(configs: list[Any], *, data_dim: int, batches_per_epoch: int,
                   players: tuple[Any, Any] | None = None) -> GAN:
  """One spec for configs that differ only in per-replica values (``sweep.VMAPPABLE``).

  Their G and D losses become tuples of choices when they differ; the rest of
  the spec is the first config's (its numbers are only initial values).
  """
  return make_gan(configs[0], data_dim=data_dim, batches_per_epoch=batches_per_epoch,
                  g_loss=loss_choices([c.gan.g_loss for c in configs]),
                  d_loss=loss_choices([c.gan.get("d_loss", "bce") for c in configs]),
                  players=players)
