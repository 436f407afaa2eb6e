"""The conditional MNIST experiment (configs/mnist_conditional.py): p(x | digit), the label
given to both players, on the unconditional run's data, protocol and driver.

Data: TFDS MNIST's training split with its labels, on device; each minibatch is a pair
(images, labels) that the library's steps give to both players. Evaluation: grids with one
row per digit (``samples/step_N.png``), and ``evaluate.ConditionalEvaluator``'s metrics.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from gan_jax import kernels, state as state_lib
from gan_jax.errors import UserError
from gan_jax.run import schema
from gan_jax.run.experiment import Context, Data
from gan_jax.state import GAN, GANState
from projects.mnist import evaluate as mnist_evaluate
from projects.mnist.experiment import FIELDS as MNIST_FIELDS, MNIST
from projects.mnist_conditional import evaluate, model

# Each architecture's player sections (model.name picks one).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "conditional_mlp_maxout": {  # Mirza & Osindero's players
        "generator": {
            "z_hidden": schema.positive(), "cond_hidden": schema.positive(),
            "joint_hidden": schema.positive(), "hidden_keep": schema.unit(),
            "init_scale": schema.positive("float"),
        },
        "discriminator": {
            "x_hidden": schema.positive(), "cond_hidden": schema.positive(),
            "joint_hidden": schema.positive(), "pieces": schema.positive(),
            "joint_pieces": schema.positive(), "input_keep": schema.unit(),
            "hidden_keep": schema.unit(), "init_scale": schema.positive("float"),
        },
    },
    "label_concat": schema.MLP_PLAYERS,  # the unconditional run's players, the label joined
}
_MODEL = {
    "name": schema.choice(tuple(ARCHITECTURES)),
    "latent_dim": schema.positive(),
    "latent_dist": schema.choice(state_lib.LATENT_DISTS, default="uniform"),
    "dtype": schema.choice(kernels.DTYPE_CHOICES, default="float32"),
}


def _any_architecture(player: str) -> dict[str, Any]:
  """The fields of ``player`` in any architecture, each optional (``check`` then holds a
  config to its own architecture's)."""
  fields: dict[str, Any] = {}
  for arch in ARCHITECTURES.values():
    fields.update({k: dataclasses.replace(f, default=None) for k, f in arch[player].items()})
  return fields


FIELDS: dict[str, Any] = {**MNIST_FIELDS, "model": {
    **_MODEL, "generator": _any_architecture("generator"),
    "discriminator": _any_architecture("discriminator")}}


class MNISTConditional(MNIST):
  fields = FIELDS

  @classmethod
  def check(cls, config, num_devices) -> None:
    super().check(config, num_devices)  # the name is known, every field present is right
    name = config.model.name
    exact = {**cls.schema(), "model": {**_MODEL, **ARCHITECTURES[name]}}
    try:  # ... and the players' fields are the name's
      schema.check(config, num_devices, exact)
    except UserError as e:
      others = [n for n in ARCHITECTURES if n != name]
      raise UserError(f"{e} (config.model.name={name!r}: its players' fields differ from "
                      f"those of {', '.join(map(repr, others))}; "
                      f"experiments/mnist_conditional.py shows both.)") from None

  @classmethod
  def evaluate_checkpoint(cls, config, workdir: str, which: str) -> dict[str, Any]:
    return mnist_evaluate.evaluate_checkpoint(
        config, workdir, which, fields=cls.schema(), builder=model,
        evaluator_cls=evaluate.ConditionalEvaluator, write_figures=evaluate.write_figures)

  def load_data(self) -> Data:
    data = super().load_data()
    labels = np.asarray(self.dataset.train_labels, np.int32)
    return dataclasses.replace(data, array=(self.dataset.train, labels))

  def make_gan(self, data: Data) -> GAN:
    return model.make_gan(self.configs, self.dataset)

  def initial_state(self, ctx: Context) -> GANState:
    return model.initial_state(ctx.config, self.dataset, ctx.gan)

  @property
  def evaluator(self) -> evaluate.ConditionalEvaluator:
    if self._evaluator is None:
      self._evaluator = evaluate.ConditionalEvaluator(self.config, self.dataset)
    return self._evaluator

  def grid_inputs(self, ctx: Context) -> tuple[jax.Array, Any]:
    return evaluate.grid_inputs(ctx.gan, jax.random.fold_in(ctx.root, 2))
