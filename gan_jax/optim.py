"""Optimizers, including the authors' SGD schedule for MNIST."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

OPTIMIZERS = ("paper_sgd", "sgd", "adam")


def momentum_sgd(learning_rate: Any, momentum: Any) -> optax.GradientTransformation:
  """SGD with momentum in pylearn2's form: v <- momentum * v - lr * g; update = v.

  The velocity accumulates learning-rate-scaled gradients, so a decaying rate
  affects new gradients only (optax.sgd scales the whole trace instead).
  """
  return optax.chain(optax.scale_by_learning_rate(learning_rate, flip_sign=True),
                     optax.trace(decay=momentum))


class LookaheadState(NamedTuple):
  inner: Any  # the inner optimizer's state
  slow: Any  # the slow weights
  count: jax.Array  # updates made


def lookahead(inner: optax.GradientTransformation, sync_every: int, alpha: float = 0.5
              ) -> optax.GradientTransformation:
  """``inner``'s updates (the fast weights), and at every ``sync_every``-th update the
  parameters go to ``slow + alpha * (fast - slow)``, the new slow weights (Lookahead, Zhang
  et al. 2019; on both players of a game it damps the rotation of their updates, Chavdarova
  et al. 2021). ``optax.lookahead`` needs its parameters wrapped as fast/slow pairs; this
  one keeps the slow weights in its state, so it fills any optimizer slot of a ``GAN``."""
  if sync_every < 1 or not 0.0 < alpha <= 1.0:
    raise ValueError(f"lookahead(sync_every={sync_every}, alpha={alpha}): sync_every must be "
                     f">= 1 and alpha in (0, 1].")

  def init(params):
    return LookaheadState(inner.init(params), jax.tree.map(jnp.asarray, params),
                          jnp.zeros([], jnp.int32))

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("lookahead needs the parameters: optimizer.update(g, s, params).")
    step, inner_state = inner.update(updates, state.inner, params)
    fast = optax.apply_updates(params, step)
    count = state.count + 1
    sync = count % sync_every == 0
    slow = jax.tree.map(lambda s, f: jnp.where(sync, s + alpha * (f - s), s), state.slow, fast)
    new = jax.tree.map(lambda s, f: jnp.where(sync, s, f), slow, fast)
    return (jax.tree.map(lambda n, p: (n - p).astype(p.dtype), new, params),
            LookaheadState(inner_state, slow, count))
  return optax.GradientTransformation(init, update)


def anneal_factor(count: Any, start: int, steps: int) -> Any:
  """1 until update ``start``, then falling linearly to 0 over ``steps`` updates."""
  return jnp.clip(1.0 - (count - start) / steps, 0.0, 1.0)


def anneal(start: int, steps: int) -> optax.GradientTransformation:
  """Scales the updates by 1 until update ``start``, then by a factor falling linearly to 0
  over the next ``steps`` updates: the rate annealed at the end of a run."""
  if start < 0 or steps < 1:
    raise ValueError(f"anneal(start={start}, steps={steps}): start must be >= 0 and steps "
                     f">= 1.")
  return optax.scale_by_schedule(lambda count: anneal_factor(count, start, steps))


def _wrap(factory: Any, cfg: Any) -> Any:
  """``factory`` (of an optax transformation), followed by ``anneal`` when the optimizer's
  config sets ``anneal_steps`` > 0 and wrapped in ``lookahead`` when it sets
  ``lookahead_steps`` > 0, inside ``inject_hyperparams``."""
  k = int(getattr(cfg, "lookahead_steps", 0) or 0)
  span = int(getattr(cfg, "anneal_steps", 0) or 0)
  if not (k or span):
    return factory
  alpha = float(getattr(cfg, "lookahead_alpha", 0.5))
  start = int(getattr(cfg, "anneal_start", 0) or 0)

  @functools.wraps(factory)  # its signature, which inject_hyperparams reads
  def wrapped(**hparams):
    opt = factory(**hparams)
    opt = optax.chain(opt, anneal(start, span)) if span else opt
    return lookahead(opt, k, alpha) if k else opt
  return wrapped


def decayed_rate(learning_rate: Any, count: Any, *, decay_factor: float,
                 min_learning_rate: float, warmup_steps: int = 0) -> Any:
  """``max(learning_rate / decay_factor**t, min_learning_rate)`` at update t = ``count``,
  times ``min(1, (t + 1) / warmup_steps)`` with a warmup: in the update and in the logs."""
  t = jnp.asarray(count).astype(jnp.float32)
  lr = jnp.maximum(learning_rate * jnp.exp(-float(np.log(decay_factor)) * t), min_learning_rate)
  if warmup_steps:
    lr = lr * jnp.minimum(1.0, (t + 1.0) / warmup_steps)
  return lr


def _decayed_momentum_sgd(learning_rate: Any, momentum: Any, *, decay_factor: float,
                          min_learning_rate: float, warmup_steps: int = 0
                          ) -> optax.GradientTransformation:
  """momentum_sgd at ``decayed_rate``."""
  return momentum_sgd(lambda count: decayed_rate(
      learning_rate, count, decay_factor=decay_factor, min_learning_rate=min_learning_rate,
      warmup_steps=warmup_steps), momentum)


def paper_sgd(*, learning_rate: float = 0.1, decay_factor: float = 1.000004,
              min_learning_rate: float = 1e-6, init_momentum: float = 0.5,
              final_momentum: float = 0.7, momentum_start_epoch: int = 1,
              momentum_saturate_epoch: int = 250, steps_per_epoch: int = 500,
              warmup_steps: int = 0, wrap_cfg: Any = None
              ) -> optax.GradientTransformation:
  """The authors' MNIST optimizer (goodfeli/adversarial mnist.yaml).

  Learning rate ``learning_rate / decay_factor**t`` at minibatch t, floored at
  ``min_learning_rate``; momentum rising linearly from ``init_momentum`` to
  ``final_momentum`` between the given epochs (``steps_per_epoch`` minibatches
  each); ``warmup_steps`` > 0 (not the authors') ramps the rate up linearly over the first
  updates, which lets rates above theirs start without diverging. The base learning rate
  and the current momentum are in the optimizer state (``opt_state.hyperparams``): the
  base rate is an array a sweep may set per replica (``state.set_hparams``);
  ``current_learning_rate`` gives the decayed one. ``wrap_cfg``: an optimizer config
  whose ``lookahead_steps`` or ``anneal_steps`` > 0 adds ``lookahead`` or ``anneal``.
  """
  span = max(momentum_saturate_epoch - momentum_start_epoch, 1)

  def momentum(count):
    epoch = count // steps_per_epoch
    frac = jnp.clip((epoch - momentum_start_epoch) / span, 0.0, 1.0)
    return init_momentum + (final_momentum - init_momentum) * frac

  return optax.inject_hyperparams(_wrap(_decayed_momentum_sgd, wrap_cfg),
                                  static_args=("decay_factor", "min_learning_rate",
                                               "warmup_steps"))(
      learning_rate=learning_rate, momentum=momentum, decay_factor=decay_factor,
      min_learning_rate=min_learning_rate, warmup_steps=warmup_steps)


def current_learning_rate(cfg: Any, opt_state: Any) -> float | None:
  """The learning rate the next update of an optimizer made by ``make_optimizer`` uses (times
  its ``anneal`` factor, when it has one)."""
  hp = getattr(opt_state, "hyperparams", None) or {}
  if "learning_rate" not in hp:
    return None
  lr = hp["learning_rate"]
  if cfg.name == "paper_sgd":
    lr = decayed_rate(lr, opt_state.count, decay_factor=cfg.decay_factor,
                      min_learning_rate=cfg.min_learning_rate,
                      warmup_steps=getattr(cfg, "warmup_steps", 0))
  span = int(getattr(cfg, "anneal_steps", 0) or 0)
  if span:
    start = int(getattr(cfg, "anneal_start", 0) or 0)
    lr = lr * anneal_factor(opt_state.count, start, span)
  return float(lr)


def make_optimizer(cfg: Any, *, steps_per_epoch: int, learning_rate: float | None = None
                   ) -> optax.GradientTransformation:
  """An optimizer from a config section with ``name`` in OPTIMIZERS and its fields.

  Every optimizer keeps its (base) learning rate in its state
  (``optax.inject_hyperparams``), so a sweep can give each replica its own
  (``state.set_hparams``). ``learning_rate`` replaces ``cfg.learning_rate``.
  """
  name = cfg.name
  if name not in OPTIMIZERS:
    raise ValueError(f"optimizer.name is {name!r}; use one of {OPTIMIZERS}.")
  lr = cfg.learning_rate if learning_rate is None else learning_rate
  if name == "paper_sgd":
    return paper_sgd(learning_rate=lr, decay_factor=cfg.decay_factor,
                     min_learning_rate=cfg.min_learning_rate, init_momentum=cfg.init_momentum,
                     final_momentum=cfg.final_momentum,
                     momentum_start_epoch=cfg.momentum_start_epoch,
                     momentum_saturate_epoch=cfg.momentum_saturate_epoch,
                     steps_per_epoch=steps_per_epoch, warmup_steps=getattr(cfg, "warmup_steps", 0),
                     wrap_cfg=cfg)
  if name == "sgd":
    return optax.inject_hyperparams(_wrap(momentum_sgd, cfg))(
        learning_rate=lr, momentum=cfg.momentum)
  if name == "adam":
    return optax.inject_hyperparams(_wrap(optax.adam, cfg))(
        learning_rate=lr, b1=cfg.b1, b2=cfg.b2)
  raise ValueError(f"optimizer.name is {name!r}; use one of {OPTIMIZERS}.")
