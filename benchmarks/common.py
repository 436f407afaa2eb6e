"""Shared helpers for the benchmark scripts: timing, tables, configs, FLOP counts."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

ROOT = pathlib.Path(__file__).resolve().parent.parent


def machine_line() -> str:
  """The CPU model, core count and the vector/matrix flags that decide matmul speed."""
  model, flags = "unknown CPU", set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name") and model == "unknown CPU":
          model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
          flags = set(line.split(":", 1)[1].split())
  except OSError:
    pass
  shown = sorted(f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2",
                                                   "fma", "avx512_vnni")))
  return (f"# machine: {model}, {os.cpu_count()} cores; flags: {' '.join(shown) or 'none of note'}")


def load_config(path: str, arg: str | None = None):
  """``get_config(arg)`` of an experiments/ file, by path relative to the repo root."""
  spec = importlib.util.spec_from_file_location("experiment_config", ROOT / path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
  """Median wall seconds of ``fn()`` (its result is blocked on) over ``repeats`` runs."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def matmul_gflops(n: int = 2048, dtype=jnp.float32, repeats: int = 10) -> float:
  """Measured throughput of one large n^3 ``jnp.dot`` (fp32 accumulation)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
  f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
  return 2 * n**3 / median_time(lambda: f(a, a), repeats) / 1e9


def product_gflops(lhs: tuple[int, int], rhs: tuple[int, int], contract: tuple[int, int],
                   dtype=jnp.float32, repeats: int = 30, product=None) -> float:
  """Measured throughput of one 2-D ``dot_general`` contracting ``lhs`` axis ``contract[0]``
  with ``rhs`` axis ``contract[1]``, operands in ``dtype``, float32 results (or of
  ``product(lhs, rhs)``, a function computing the same)."""
  a = jax.random.normal(jax.random.key(0), lhs, jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.key(1), rhs, jnp.float32).astype(dtype)
  dims = (((contract[0],), (contract[1],)), ((), ()))
  f = jax.jit(product or (lambda x, y: jax.lax.dot_general(x, y, dims,
                                                           preferred_element_type=jnp.float32)))
  m, n = lhs[1 - contract[0]], rhs[1 - contract[1]]
  return 2 * m * n * lhs[contract[0]] / median_time(lambda: f(a, b), repeats) / 1e9


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
  """A Markdown table on stdout, ready to paste into a README."""
  cells = [[str(c) for c in r] for r in rows]
  widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
  line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
  print(line(headers))
  print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
  for r in cells:
    print(line(r))


# --- Matmul FLOPs of one training iteration, counted by hand -----------------


def _dense_dims(module, input_dim: int) -> list[tuple[int, int]]:
  """(fan_in, fan_out) of each Dense layer of an MLPGenerator / MaxoutDiscriminator."""
  dims, width = [], input_dim
  pieces = getattr(module, "pieces", 1) if getattr(module, "activation", "") == "maxout" else 1
  for h in module.hidden:
    dims.append((width, h * pieces))
    width = h
  dims.append((width, getattr(module, "output_dim", 1)))
  return dims


def _fwd(dims, rows):  # forward matmuls
  return sum(2 * rows * i * o for i, o in dims)


_wgrad = _fwd  # weight gradients: the same products, transposed


def _xgrad(dims, rows, first: bool):  # input gradients (of the first layer only if needed)
  return sum(2 * rows * i * o for n, (i, o) in enumerate(dims) if first or n > 0)


def iteration_flops(gan, batch: int, data_dim: int) -> int:
  """The matmul FLOPs one training iteration needs at global batch ``batch``.

  Counts only what the algorithm requires: D's input gradient on real data and
  G's gradient w.r.t. z are not needed and not counted. Elementwise work
  (activations, dropout, optimizer) is a small remainder and left out.
  """
  g = _dense_dims(gan.generator, gan.latent_dim)
  d = _dense_dims(gan.discriminator, data_dim)
  m = batch
  g_train = _fwd(g, m) + _wgrad(g, m) + _xgrad(g, m, first=False)
  if gan.update_rule == "simultaneous":
    # D on real and fake rows: forward, weight grads and back-propagation inside
    # D for D's loss; a second backward pass on the fake rows for G's loss.
    return (g_train + _fwd(d, 2 * m) + _wgrad(d, 2 * m) + _xgrad(d, 2 * m, first=False)
            + _xgrad(d, m, first=True))
  d_step = _fwd(g, m) + _fwd(d, 2 * m) + _wgrad(d, 2 * m) + _xgrad(d, 2 * m, first=False)
  g_step = g_train + _fwd(d, m) + _xgrad(d, m, first=True)
  return gan.k * d_step + g_step


def iteration_matmul_shapes(gan, batch: int, data_dim: int) -> list[tuple[int, int, int]]:
  """(M, K, N) of every matmul ``iteration_flops`` counts, one entry per matmul."""
  g = _dense_dims(gan.generator, gan.latent_dim)
  d = _dense_dims(gan.discriminator, data_dim)
  m = batch
  out = []

  def fwd(dims, rows):
    out.extend((rows, i, o) for i, o in dims)

  def wgrad(dims, rows):
    out.extend((i, rows, o) for i, o in dims)

  def xgrad(dims, rows, first):
    out.extend((rows, o, i) for n, (i, o) in enumerate(dims) if first or n > 0)

  def g_train():
    fwd(g, m); wgrad(g, m); xgrad(g, m, False)

  if gan.update_rule == "simultaneous":
    g_train()
    for _ in range(2):  # the real and the fake half
      fwd(d, m); wgrad(d, m); xgrad(d, m, False)
    xgrad(d, m, True)
    return out
  for _ in range(gan.k):
    fwd(g, m); fwd(d, 2 * m); wgrad(d, 2 * m); xgrad(d, 2 * m, False)
  g_train(); fwd(d, m); xgrad(d, m, True)
  return out


def shape_matched_seconds(shapes: list[tuple[int, int, int]], reps: int = 30,
                          dtype=jnp.float32) -> float:
  """Seconds the given matmuls take back to back at their own shapes (operands in ``dtype``,
  float32 results).

  The best an iteration made of exactly these matmuls can do on this machine:
  small matmuls run well below the large-matmul peak.
  """
  total = 0.0
  for (m, k, n), count in sorted({s: shapes.count(s) for s in shapes}.items()):
    a = jax.random.normal(jax.random.key(0), (m, k), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (k, n), jnp.float32).astype(dtype)

    def body(c, _, a=a, b=b):
      a_ = jax.lax.optimization_barrier(a)  # keep the product inside the loop
      return c + jnp.dot(a_, b, preferred_element_type=jnp.float32)[0, 0], None

    f = jax.jit(lambda: jax.lax.scan(body, jnp.float32(0), None, length=reps)[0])
    total += count * median_time(f, 3) / reps
  return total
