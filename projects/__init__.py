"""The experiments that ship with gan_jax, one folder each: data, players, evaluation,
pictures and configs. A config names its project by ``config.experiment``."""

from __future__ import annotations

import importlib
from typing import Any

from gan_jax.errors import UserError
from gan_jax.run.experiment import Experiment

PROJECTS = {"mnist": "projects.mnist.experiment:MNIST",
            "mnist_conditional": "projects.mnist_conditional.experiment:MNISTConditional",
            "cifar10": "projects.cifar10.experiment:CIFAR10",
            "gaussian_1d": "projects.gaussian_1d.experiment:Gaussian1D",
            "ring_2d": "projects.ring_2d.experiment:Ring2D"}


def find(name: str) -> type[Experiment]:
  """The Experiment class a config names: a project above, or "package.module:ClassName"."""
  target = PROJECTS.get(name, name)
  module_name, _, class_name = target.partition(":")
  cls: Any = None
  if class_name:
    try:
      cls = getattr(importlib.import_module(module_name), class_name, None)
    except ImportError:
      cls = None
  if not (isinstance(cls, type) and issubclass(cls, Experiment)):
    raise UserError(f"config.experiment is {name!r}; use one of "
                    f"{', '.join(map(repr, PROJECTS))}, or 'package.module:ClassName' naming "
                    f"a subclass of gan_jax.run.experiment.Experiment.")
  return cls
