"""Where whole-loop compilation pays: the 2-D ring's tiny GAN, dispatch-bound.

  python benchmarks/ring.py [--steps 200] [--rounds 3]

One table, measured in one run (medians of interleaved rounds):
(a) the lax.scan loop (TrainLoop, ``steps`` iterations per call) against a
    Python loop calling a jitted one-iteration step, the same work;
(b) 16 replicas (16 seeds) trained as one program -- ``jax.vmap`` of the
    scanned chunk over the state and the key -- against the same 16 trained
    one after another with the scan loop.
Model and batch: experiments/ring_2d.py (G 2-128-128-2, D maxout 128x2, batch 256).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import gan_jax  # noqa: E402
from benchmarks import common  # noqa: E402
from gan_jax import loop as loop_lib  # noqa: E402
from projects.ring_2d import experiment as ring  # noqa: E402

REPLICAS = 16


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=200, help="iterations per timed call")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--batch", type=int, default=0, help="batch size (0: the config's 256)")
  parser.add_argument("--width", type=int, default=0,
                      help="hidden units per layer of G and D (0: the config's 128)")
  args = parser.parse_args()
  config = common.load_config("experiments/ring_2d.py")
  if args.width:
    config.model.generator.hidden = config.model.discriminator.hidden = (args.width,) * 2
  batch, n = args.batch or config.batch_size, args.steps
  gan = ring.make_gan([config])
  source = loop_lib.SamplerSource(ring.ring_sampler(8, 2.0, 0.02))
  init = lambda seed: gan_jax.init_state(gan, jax.random.key(seed), jnp.zeros((1, 2)))

  # (a) scan vs a Python loop over a jitted single iteration.
  tl = gan_jax.TrainLoop(gan, source, global_batch=batch, steps_per_call=n, parallel="none")
  scan_box = [tl.put_state(init(0))]

  def scan_call():
    scan_box[0], m = tl(scan_box[0], None, jax.random.key(1))
    return m

  kernels = tl.kernels_used  # every loop below computes with the same kernels
  one = jax.jit(functools.partial(loop_lib.run_chunk, gan, source, num_steps=1,
                                  global_batch=batch, kernels=kernels), donate_argnums=0)
  step_box = [jax.device_put(init(0), may_alias=False)]

  def step_call():
    for _ in range(n):
      step_box[0], m = one(step_box[0], None, jax.random.key(1))
    return m

  # (a') the loop a researcher writes first: split keys and draw the batch in Python,
  # call a jitted train_step, read the losses for the progress line every step.
  sample = jax.jit(source.sample_fn, static_argnums=1)
  step = jax.jit(functools.partial(gan_jax.train_step, gan, kernels=kernels), donate_argnums=0)
  typical_box = [jax.device_put(init(0), may_alias=False), jax.random.key(1)]

  def typical_call():
    state, key = typical_box
    for _ in range(n):
      key, data_key, step_key = jax.random.split(key, 3)
      real = sample(data_key, batch)[None]
      state, m = step(state, real, step_key)
      float(m["d_loss"]), float(m["g_loss"])
    typical_box[:] = [state, key]
    return m

  # (b) 16 replicas: vmap of the scanned chunk, against 16 sequential scan loops.
  chunk = functools.partial(loop_lib.run_chunk, gan, source, num_steps=n, global_batch=batch,
                            kernels=kernels)
  vchunk = jax.jit(jax.vmap(chunk, in_axes=(0, None, 0)), donate_argnums=0)
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[init(s) for s in range(REPLICAS)])
  keys = jax.random.split(jax.random.key(1), REPLICAS)
  vbox = [stacked]

  def vmap_call():
    vbox[0], m = vchunk(vbox[0], None, keys)
    return m

  seq_boxes = [tl.put_state(init(s)) for s in range(REPLICAS)]

  def seq_call():
    for i in range(REPLICAS):
      seq_boxes[i], m = tl(seq_boxes[i], None, keys[i])
    return m

  runners = {"scan": scan_call, "per_step": step_call, "typical": typical_call,
             "vmap16": vmap_call, "seq16": seq_call}
  for fn in runners.values():  # compile and warm up
    jax.block_until_ready(fn())
  times = {k: [] for k in runners}
  for _ in range(args.rounds):  # interleaved, so drifts in machine load hit all alike
    for k, fn in runners.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn())
      times[k].append(time.perf_counter() - t0)
  med = {k: statistics.median(v) for k, v in times.items()}
  its = {"scan": n / med["scan"], "per_step": n / med["per_step"], "typical": n / med["typical"],
         "vmap16": REPLICAS * n / med["vmap16"], "seq16": REPLICAS * n / med["seq16"]}
  print(f"# {jax.device_count()} {jax.devices()[0].platform} device(s), jax {jax.__version__}; "
        f"ring_2d model, hidden {config.model.generator.hidden}, batch {batch}, {n} iterations per "
        f"call, median of {args.rounds} rounds")
  common.print_table(
      ["loop", "replica-iterations/s", "ms per iteration", "speed-up"],
      [["typical Python loop: keys, batch, jitted train_step, losses read",
        f"{its['typical']:.0f}", f"{1e3 / its['typical']:.3f}", "1.0x"],
       ["Python loop over a jitted 1-iteration step (data drawn on device)",
        f"{its['per_step']:.0f}", f"{1e3 / its['per_step']:.3f}",
        f"{its['per_step'] / its['typical']:.1f}x"],
       ["lax.scan loop (TrainLoop)", f"{its['scan']:.0f}", f"{1e3 / its['scan']:.3f}",
        f"{its['scan'] / its['typical']:.1f}x ({its['scan'] / its['per_step']:.1f}x the "
        f"jitted 1-iteration loop)"],
       [f"{REPLICAS} replicas one after another (scan loop each)", f"{its['seq16']:.0f}",
        f"{1e3 / its['seq16']:.3f}", "1.0x"],
       [f"{REPLICAS} replicas as one vmapped scan", f"{its['vmap16']:.0f}",
        f"{1e3 / its['vmap16']:.3f}", f"{its['vmap16'] / its['seq16']:.1f}x"]])


if __name__ == "__main__":
  main()
