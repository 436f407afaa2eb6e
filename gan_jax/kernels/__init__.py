"""Platform kernels, chosen by one switch: ``"plain"``, ``"cpu"`` or ``"auto"``.

``plain`` computes every product, mask and norm of the players and steps as JAX,
Flax and optax write it: XLA's own convolution gradients, ``optax.tree.norm``.
``cpu`` holds the rewrites that make XLA:CPU fast, each with the same results.
``auto`` takes ``cpu`` when the devices a run trains on are CPUs, ``plain`` on
GPUs and TPUs.

The project's players take a ``kernels`` attribute; left at ``"auto"`` they
follow the step that applies them (the steps' ``kernels`` argument, which
``TrainLoop`` resolves from its devices). A layer of your own takes the CPU
rewrites directly, e.g. ``nn.Conv(..., conv_general_dilated=cpu.conv_general_dilated)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

from gan_jax.kernels import cpu, plain

CHOICES = ("auto", "plain", "cpu")
_SETS = {"plain": plain, "cpu": cpu}


def choose(kernels: str, platform: str) -> str:
  """The kernel set for arrays on ``platform`` ("cpu", "gpu", "tpu", ...): ``kernels`` itself
  unless it is ``"auto"``, then ``"cpu"`` on CPUs and ``"plain"`` elsewhere."""
  if kernels not in CHOICES:
    raise ValueError(f"kernels is {kernels!r}; use one of {CHOICES}.")
  if kernels != "auto":
    return kernels
  return "cpu" if platform == "cpu" else "plain"


def for_devices(kernels: str, devices: Sequence[Any]) -> str:
  """``choose`` for the platform of ``devices`` (the devices a run trains on)."""
  return choose(kernels, devices[0].platform)


def get(kernels: str) -> ModuleType:
  """The module of a resolved kernel set; ``"auto"`` outside a step is ``plain``."""
  if kernels == "auto":
    return plain
  if kernels not in _SETS:
    raise ValueError(f"kernels is {kernels!r}; use one of {CHOICES}.")
  return _SETS[kernels]


def bind(module: Any, kernels: str) -> Any:
  """``module`` computing with ``kernels`` if it has a ``kernels`` attribute left at "auto"."""
  if getattr(module, "kernels", None) == "auto" and kernels != "auto":
    return module.clone(kernels=kernels)
  return module


__all__ = ["CHOICES", "bind", "choose", "cpu", "for_devices", "get", "plain"]
