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
products where they run faster than float32 ones (GPUs, TPUs, CPUs whose bfloat16 units
XLA uses), float32 elsewhere.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp

from gan_jax.kernels import cpu, plain

CHOICES = ("auto", "plain", "cpu")
DTYPE_CHOICES = ("auto", "float32", "bfloat16")
# /proc/cpuinfo flags of CPUs that can multiply bfloat16 in hardware (x86: AVX512_BF16 or
# AMX; Arm: the BF16 extension). Without one, bfloat16 products are emulated.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
# With one, ``auto`` still times the products (``bf16_speedup``): a flag names instructions,
# not the speed XLA gets from them. bfloat16 is taken when it is at least this much faster.
BF16_MIN_SPEEDUP = 1.2
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


@functools.cache
def bf16_speedup() -> float:
  """How many times faster this process's CPU runs a bfloat16 product (float32 results) than
  a float32 one, at the MNIST players' shape ([200, 1200] @ [1200, 1200]): the best of 5
  interleaved runs of each, timed once per process (a fraction of a second). On 2 cores
  this product ran 0.57x float32 on a Xeon whose flags name avx512_bf16 but no AMX;
  such a layer's products ran 1.1-3.3x faster on a Xeon with AMX tiles."""
  cpu_device = jax.devices("cpu")[0]
  product = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
  pairs = {}
  for dtype in (jnp.float32, jnp.bfloat16):
    a = jax.device_put(jnp.ones((200, 1200), dtype), cpu_device)
    b = jax.device_put(jnp.ones((1200, 1200), dtype), cpu_device)
    product(a, b).block_until_ready()  # compiled outside the timing
    pairs[dtype] = (a, b)
  best = {dtype: float("inf") for dtype in pairs}
  for _ in range(5):
    for dtype, (a, b) in pairs.items():
      start = time.perf_counter()
      product(a, b).block_until_ready()
      best[dtype] = min(best[dtype], time.perf_counter() - start)
  return best[jnp.float32] / best[jnp.bfloat16]


def compute_dtype(dtype: str, platform: str) -> str:
  """The players' compute dtype on ``platform``: ``dtype`` itself unless it is ``"auto"``,
  then ``"bfloat16"`` on GPUs and TPUs, and on CPUs whose flags name bfloat16 units
  (``BF16_CPU_FLAGS``) where the products also time at least ``BF16_MIN_SPEEDUP`` times
  faster than float32 (``bf16_speedup``); ``"float32"`` on other CPUs, where bfloat16
  products are emulated or XLA leaves the units idle, and run slower than float32."""
  if dtype not in DTYPE_CHOICES:
    raise ValueError(f"dtype is {dtype!r}; use one of {DTYPE_CHOICES}.")
  if dtype != "auto":
    return dtype
  if platform != "cpu":
    return "bfloat16"
  if BF16_CPU_FLAGS & cpu_flags() and bf16_speedup() >= BF16_MIN_SPEEDUP:
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


__all__ = ["BF16_CPU_FLAGS", "BF16_MIN_SPEEDUP", "CHOICES", "DTYPE_CHOICES", "bf16_speedup",
           "bind", "choose", "compute_dtype", "cpu", "cpu_flags", "for_devices", "get", "plain"]
