"""Data-parallel scaling: the paper's MNIST model on 1, 2, 4, ... (fake) devices.

  python benchmarks/scaling.py [--devices 1,2,4] [--batches 100,400] [--iterations 50]

Each device count runs in a fresh process (the count is fixed when JAX starts:
XLA_FLAGS=--xla_force_host_platform_device_count=N on a CPU; on a GPU host the
real devices are used, up to N). The global batch is split over the devices
(pmap, gradients averaged with lax.pmean); the table gives iterations/s and
examples/s of the lax.scan loop, the achieved matmul GFLOP/s, and the speed-up
over one device. On a CPU the fake devices share the same cores, so this shows
the cost of the data-parallel machinery rather than a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

WORKER = r"""
import json, os, sys, time, statistics
sys.path.insert(0, {root!r})
import jax, numpy as np
import gan_jax
from gan_jax.run import build
from benchmarks import common
n, batch, iters = {n}, {batch}, {iters}
config = common.load_config("experiments/mnist.py")
config.batch_size = batch
gan = build.make_gan(config, data_dim=784, batches_per_epoch=50_000 // batch)
data = np.random.RandomState(0).randint(0, 256, (50_000, 784)).astype(np.uint8)
tl = gan_jax.TrainLoop(gan, gan_jax.ArraySource(50_000), global_batch=batch,
                       steps_per_call=iters, parallel="pmap", devices=tuple(jax.devices()[:n]))
ddata = tl.put_data(data)
box = [tl.put_state(gan_jax.init_state(gan, jax.random.key(0), data[:1]))]
def call():
  box[0], m = tl(box[0], ddata, jax.random.key(1))
  return m
jax.block_until_ready(call())
times = []
for _ in range({rounds}):
  t0 = time.perf_counter(); jax.block_until_ready(call()); times.append(time.perf_counter() - t0)
print("RESULT", json.dumps(dict(rate=iters / statistics.median(times),
                               flops=common.iteration_flops(gan, batch, 784),
                               platform=jax.devices()[0].platform, devices=len(jax.devices()))))
"""


def run(n: int, batch: int, iters: int, rounds: int) -> dict:
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      f" --xla_force_host_platform_device_count={n}").strip()
  code = WORKER.format(root=ROOT, n=n, batch=batch, iters=iters, rounds=rounds)
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=1800)
  lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
  if out.returncode or not lines:
    raise RuntimeError(f"{n} devices, batch {batch} failed:\n{out.stderr[-2000:]}")
  return json.loads(lines[0][7:])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--devices", default="1,2,4")
  parser.add_argument("--batches", default="100,400")
  parser.add_argument("--iterations", type=int, default=50)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()
  from benchmarks import common  # pylint: disable=import-outside-toplevel
  rows, platform = [], "?"
  for batch in map(int, args.batches.split(",")):
    base = None
    for n in map(int, args.devices.split(",")):
      if batch % n:
        continue
      r = run(n, batch, args.iterations, args.rounds)
      platform = r["platform"]
      base = base or r["rate"]
      rows.append([batch, n, f"{r['rate']:.1f}", f"{r['rate'] * batch:.0f}",
                   f"{r['rate'] * r['flops'] / 1e9:.1f}", f"{r['rate'] / base:.2f}x"])
  print(f"# the paper's MNIST model, pmap over {platform} devices, lax.scan loop of "
        f"{args.iterations} iterations, median of {args.rounds}; {os.cpu_count()} CPU cores")
  common.print_table(["global batch", "devices", "iterations/s", "examples/s",
                      "matmul GFLOP/s", "vs 1 device"], rows)


if __name__ == "__main__":
  main()
