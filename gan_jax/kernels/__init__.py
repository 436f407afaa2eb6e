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

The compute dtype ``"auto"`` (``compute_dtype``) is the same kind of choice: bfloat16
products where the hardware has units for them, float32 where bfloat16 would only be
emulated (and slower than float32).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from gan_jax.kernels import cpu, plain

CHOICES = ("auto", "plain", "cpu")
DTYPE_CHOICES = ("auto", "float32", "bfloat16")
# /proc/cpuinfo flags of CPUs that multiply bfloat16 in hardware (x86: AVX512_BF16 or AMX;
# Arm: the BF16 extension).
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
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


@functools.cache
def cpu_flags() -> frozenset[str]:
  """This machine's CPU feature flags as Linux reports them; empty where it cannot be read."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
          return frozenset(value.split())
  except OSError:
    pass
  return frozenset()


def compute_dtype(dtype: str, platform: str) -> str:
  """The players' compute dtype on ``platform``: ``dtype`` itself unless it is ``"auto"``,
  then ``"bfloat16"`` on GPUs and TPUs and on CPUs with bfloat16 units (``BF16_CPU_FLAGS``),
  ``"float32"`` on other CPUs, where emulated bfloat16 products run slower than float32."""
  if dtype not in DTYPE_CHOICES:
    raise ValueError(f"dtype is {dtype!r}; use one of {DTYPE_CHOICES}.")
  if dtype != "auto":
    return dtype
  if platform != "cpu" or BF16_CPU_FLAGS & cpu_flags():
    return "bfloat16"
  return "float32"


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


__all__ = ["BF16_CPU_FLAGS", "CHOICES", "DTYPE_CHOICES", "bind", "choose", "compute_dtype",
           "cpu", "cpu_flags", "for_devices", "get", "plain"]
