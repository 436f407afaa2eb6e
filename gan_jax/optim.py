"""Optimizers, including the authors' SGD schedule for MNIST."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax

OPTIMIZERS = ("paper_sgd", "sgd", "adam")


def momentum_sgd(learning_rate: Any, momentum: Any) -> optax.GradientTransformation:
  """SGD with momentum in pylearn2's form: v <- momentum * v - lr * g; update = v.

  The velocity accumulates learning-rate-scaled gradients, so a decaying rate
  affects new gradients only (optax.sgd scales the whole trace instead).
  """
  return optax.chain(optax.scale_by_learning_rate(learning_rate, flip_sign=True),
                     optax.trace(decay=momentum))


def paper_sgd(*, learning_rate: float = 0.1, decay_factor: float = 1.000004,
              min_learning_rate: float = 1e-6, init_momentum: float = 0.5,
              final_momentum: float = 0.7, momentum_start_epoch: int = 1,
              momentum_saturate_epoch: int = 250, steps_per_epoch: int = 500
              ) -> optax.GradientTransformation:
  """The authors' MNIST optimizer (goodfeli/adversarial mnist.yaml).

  Learning rate ``learning_rate / decay_factor**t`` at minibatch t, floored at
  ``min_learning_rate``; momentum rising linearly from ``init_momentum`` to
  ``final_momentum`` between the given epochs (``steps_per_epoch`` minibatches
  each). Both are exposed in the optimizer state (``opt_state.hyperparams``)
  for logging.
  """
  lr = optax.exponential_decay(init_value=learning_rate, transition_steps=1,
                               decay_rate=1.0 / decay_factor, end_value=min_learning_rate)
  span = max(momentum_saturate_epoch - momentum_start_epoch, 1)

  def momentum(count):
    epoch = count // steps_per_epoch
    frac = jnp.clip((epoch - momentum_start_epoch) / span, 0.0, 1.0)
    return init_momentum + (final_momentum - init_momentum) * frac

  return optax.inject_hyperparams(momentum_sgd)(learning_rate=lr, momentum=momentum)


def make_optimizer(cfg: Any, *, steps_per_epoch: int, learning_rate: Any = None
                   ) -> optax.GradientTransformation:
  """An optimizer from a config section with ``name`` in OPTIMIZERS and its fields.

  ``learning_rate`` replaces ``cfg.learning_rate`` when given; it may be a traced
  scalar (a sweep's per-replica value under ``jax.vmap``).
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
                     steps_per_epoch=steps_per_epoch)
  if name == "sgd":
    return optax.inject_hyperparams(momentum_sgd)(learning_rate=lr, momentum=cfg.momentum)
  if name == "adam":
    return optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=cfg.b1, b2=cfg.b2)
  raise ValueError(f"optimizer.name is {name!r}; use one of {OPTIMIZERS}.")
