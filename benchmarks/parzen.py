"""Time of the Parzen-window protocol at the paper's sizes.

  python benchmarks/parzen.py

10,000 kernel centres, sigma chosen over 10 candidates on 1,000 validation
points, mean log p over 10,000 test points, d = 784. Timing does not depend on
the values, so the points are uniform noise in [0, 1].
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from projects.mnist.metrics import parzen  # noqa: E402


def main():
  rs = np.random.RandomState(0)
  samples = rs.rand(10_000, 784).astype(np.float32)
  valid = rs.rand(1_000, 784).astype(np.float32)
  test = rs.rand(10_000, 784).astype(np.float32)
  t0 = time.perf_counter()
  parzen.parzen_evaluate(samples, valid, test)  # includes compilation
  first = time.perf_counter() - t0
  times = []
  for _ in range(3):
    t0 = time.perf_counter()
    parzen.parzen_evaluate(samples, valid, test)
    times.append(time.perf_counter() - t0)
  flops = 2 * 784 * 10_000 * (1_000 + 10_000)
  med = float(np.median(times))
  print(f"# {jax.device_count()} {jax.devices()[0].platform} device(s), jax {jax.__version__}")
  common.print_table(
      ["protocol (10k centres, 1k validation x 10 sigmas, 10k test)", "seconds", "matmul GFLOP/s"],
      [["first call (with compilation)", f"{first:.2f}", ""],
       ["median of 3 further calls", f"{med:.2f}", f"{flops / med / 1e9:.0f}"]])


if __name__ == "__main__":
  main()
