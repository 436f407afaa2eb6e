"""Training throughput of the paper's MNIST GAN on this machine, and where the time goes.

  python benchmarks/throughput.py [--config experiments/mnist.py] [--chunk 100] [--repeats 7]

Prints one table: iterations/s of (a) the lax.scan loop (TrainLoop), (b) a
Python loop over a jitted one-iteration step doing exactly the same work,
(c) a naive loop feeding host minibatches to a jitted train_step; the
hand-counted matmul FLOPs of one iteration (and XLA's own count); achieved
GFLOP/s against one large fp32 matmul measured in the same run; and the
cost of the dropout masks' random bits. Rows without dropout, without G's EMA, without
the per-step gradient norms, and the update alone show what each costs; the update
alone without the CPU kernels' join shows what updating the weights in place saves, and
the same loop with the plain kernels (``kernels="plain"``) what the CPU rewrites save.
Data are synthetic bytes of MNIST's shape: throughput does not depend on pixel values.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dataclasses  # noqa: E402
import functools  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import gan_jax  # noqa: E402
from benchmarks import common  # noqa: E402
from gan_jax import kernels, loop as loop_lib, steps  # noqa: E402
from gan_jax.kernels import cpu  # noqa: E402
from gan_jax.run import build  # noqa: E402

N_TRAIN, DATA_DIM = 50_000, 784
UPDATE_ALONE = "lax.scan loop, the update alone (no EMA, no gradient norms)"
UPDATE_ALONE_COPIED = "the update alone, weights copied each iteration (no join)"
PLAIN = "lax.scan loop, plain kernels (kernels=\"plain\")"
KERNELS = kernels.for_devices("auto", jax.devices())  # what TrainLoop's default resolves to


def scan_runner(gan, data, batch, chunk, kernels_used="auto", norms_every=1):
  """A call running ``chunk`` iterations of the lax.scan loop (TrainLoop)."""
  state = gan_jax.init_state(gan, jax.random.key(0), data[:2])
  tl = gan_jax.TrainLoop(gan, gan_jax.ArraySource(len(data)), global_batch=batch,
                         steps_per_call=chunk, parallel="none", kernels=kernels_used,
                         norms_every=norms_every)
  ddata = tl.put_data(data)
  box = [tl.put_state(state)]

  def call():
    box[0], metrics = tl(box[0], ddata, jax.random.key(1))
    return metrics

  return call


def per_step_runner(gan, data, batch, chunk):
  """``chunk`` calls of one jitted iteration (same on-device sampling) from Python."""
  state = gan_jax.init_state(gan, jax.random.key(0), data[:2])
  ddata = jax.device_put(data)
  one = jax.jit(functools.partial(loop_lib.run_chunk, gan, gan_jax.ArraySource(len(data)),
                                  num_steps=1, global_batch=batch, kernels=KERNELS),
                donate_argnums=0)
  box = [jax.device_put(state, may_alias=False)]
  key = jax.random.key(1)

  def call():
    for _ in range(chunk):
      box[0], metrics = one(box[0], ddata, key)
    return metrics

  return call


def naive_runner(gan, data, batch, chunk):
  """Host-side minibatches (NumPy indexing, float conversion) fed to a jitted train_step."""
  state = gan_jax.init_state(gan, jax.random.key(0), data[:2])
  step = jax.jit(functools.partial(steps.train_step, gan, kernels=KERNELS), donate_argnums=0)
  rs = np.random.RandomState(0)
  box = [jax.device_put(state, may_alias=False)]
  nb = gan.real_batches_per_step

  def call():
    for i in range(chunk):
      idx = rs.randint(0, len(data), (nb, batch))
      real = data[idx].astype(np.float32) / 255.0
      box[0], metrics = step(box[0], real, jax.random.fold_in(jax.random.key(1), i))
    return metrics

  return call


def without_join(call):
  """``call`` traced with the CPU kernels' join as the identity: XLA then copies the weights
  that a backward pass reads at the top of every iteration."""
  def patched():
    saved, cpu.join_updates = cpu.join_updates, (lambda modules, grads, *after: grads)
    try:
      return call()
    finally:
      cpu.join_updates = saved
  return patched


def interleaved_rates(runners: dict, chunk: int, repeats: int) -> dict:
  """Iterations/s of each runner: medians over rounds that call every runner once."""
  times = {name: [] for name in runners}
  for call in runners.values():  # compile and warm up
    jax.block_until_ready(call())
  for _ in range(repeats):
    for name, call in runners.items():
      t0 = time.perf_counter()
      jax.block_until_ready(call())
      times[name].append(time.perf_counter() - t0)
  return {name: chunk / statistics.median(t) for name, t in times.items()}


def xla_flops(gan, data, batch):
  state = gan_jax.init_state(gan, jax.random.key(0), data[:2])
  f = jax.jit(functools.partial(loop_lib.run_chunk, gan, gan_jax.ArraySource(len(data)),
                                num_steps=1, global_batch=batch, kernels=KERNELS))
  cost = f.lower(state, jnp.asarray(data), jax.random.key(1)).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan")))


def mask_ms(gan, batch, impl, packed, repeats=30):
  """Milliseconds to draw one iteration's dropout masks (simultaneous layout)."""
  d = gan.discriminator
  shapes = [(2 * batch, DATA_DIM, d.input_keep)] + [(2 * batch, h, d.hidden_keep) for h in d.hidden]

  def draw(key):
    out = []
    for i, (r, c, keep) in enumerate(shapes):
      k = jax.random.fold_in(key, i)
      if packed:
        out.append(kernels.get(KERNELS).bernoulli_mask(k, keep, (r, c))[0])
      else:
        out.append(jax.random.bernoulli(k, keep, (r, c)))
    return out

  f = jax.jit(draw)
  key = jax.random.key(0, impl=impl)
  return 1e3 * common.median_time(lambda: f(key), repeats)


NORMS_PER_CALL = "lax.scan loop, gradient norms at the call's last iteration only"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="experiments/mnist.py")
  parser.add_argument("--chunk", type=int, default=100, help="iterations per scan call")
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args()

  config = common.load_config(args.config)
  batch = config.batch_size
  gan = build.make_gan(config, data_dim=DATA_DIM, batches_per_epoch=N_TRAIN // batch)
  data = np.random.RandomState(0).randint(0, 256, (N_TRAIN, DATA_DIM)).astype(np.uint8)

  peak = common.matmul_gflops()
  flops = common.iteration_flops(gan, batch, DATA_DIM)
  no_drop = dataclasses.replace(gan, discriminator=gan.discriminator.clone(
      input_keep=1.0, hidden_keep=1.0))
  no_ema = dataclasses.replace(gan, ema_decay=0.0)
  runners = {
      f"lax.scan loop (TrainLoop){', EMA of G' if gan.has_ema else ''}":
          scan_runner(gan, data, batch, args.chunk),
      "Python loop over jitted 1-iteration step": per_step_runner(gan, data, batch, args.chunk),
      "naive: host batches -> jitted train_step": naive_runner(gan, data, batch, args.chunk),
      "lax.scan loop, dropout off": scan_runner(no_drop, data, batch, args.chunk),
  }
  if gan.has_ema:  # what keeping G's EMA costs
    runners["lax.scan loop, no EMA"] = scan_runner(no_ema, data, batch, args.chunk)
  runners[PLAIN] = scan_runner(gan, data, batch, args.chunk, "plain")
  if gan.grad_norms:  # ... and the per-step gradient norms, with the update alone last
    runners["lax.scan loop, no gradient norms"] = scan_runner(
        dataclasses.replace(gan, grad_norms=False), data, batch, args.chunk)
    runners[NORMS_PER_CALL] = scan_runner(gan, data, batch, args.chunk, norms_every=args.chunk)
    alone = dataclasses.replace(no_ema, grad_norms=False)
    runners[UPDATE_ALONE] = scan_runner(alone, data, batch, args.chunk)
    runners[UPDATE_ALONE_COPIED] = without_join(scan_runner(alone, data, batch, args.chunk))
  rates = interleaved_rates(runners, args.chunk, args.repeats)
  peak_after = common.matmul_gflops()
  ceiling = 1.0 / common.shape_matched_seconds(common.iteration_matmul_shapes(gan, batch, DATA_DIM))

  print(common.machine_line())
  print(f"# {args.config}: update_rule={gan.update_rule}, k={gan.k}, global batch {batch}, "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s), jax {jax.__version__}, "
        f"kernels={KERNELS}")
  print(f"# matmul FLOPs per iteration: {flops / 1e9:.3f} G counted, "
        f"{xla_flops(gan, data, batch) / 1e9:.3f} G by XLA's cost analysis (incl. elementwise)")
  print(f"# fp32 matmul peak (2048^3 jnp.dot): {peak:.1f} GFLOP/s before, {peak_after:.1f} after")
  peak = max(peak, peak_after)
  print(f"# shape-matched ceiling: this iteration's matmuls alone, each at its own shape, "
        f"run at {ceiling:.1f} it/s ({ceiling * flops / 1e9:.1f} GFLOP/s, "
        f"{100 * ceiling * flops / 1e9 / peak:.0f}% of the large-matmul peak)")
  rows = []
  for name, rate in rates.items():
    achieved = rate * flops / 1e9
    rows.append([name, f"{rate:.1f}", f"{1e3 / rate:.1f}", f"{achieved:.1f}",
                 f"{100 * achieved / peak:.0f}%"])
    rows[-1].append(f"{100 * rate / ceiling:.0f}%")
  common.print_table(["loop", "it/s", "ms/it", "GFLOP/s", "of matmul peak",
                      "of shape-matched ceiling"], rows)
  scan, per_step, naive, scan_nodrop = list(rates.values())[:4]
  print(f"\nscan / per-step: {scan / per_step:.2f}x   scan / naive: {scan / naive:.2f}x   "
        f"dropout's share of an iteration: {100 * (1 - scan / scan_nodrop):.0f}%"
        + (f"   EMA's share: {100 * (1 - scan / rates['lax.scan loop, no EMA']):.0f}%"
           if gan.has_ema else "")
        + (f"   gradient norms' share: "
           f"{100 * (1 - scan / rates['lax.scan loop, no gradient norms']):.0f}%"
           if gan.grad_norms else ""))
  print(f"{KERNELS} kernels / plain kernels: {scan / rates[PLAIN]:.2f}x")
  if NORMS_PER_CALL in rates:
    print(f"gradient norms once per call (the driver's default) / at every step: "
          f"{rates[NORMS_PER_CALL] / scan:.3f}x")
  if UPDATE_ALONE in rates:
    print(f"weights updated in place (join) / copied: "
          f"{rates[UPDATE_ALONE] / rates[UPDATE_ALONE_COPIED]:.3f}x")
  print()
  rows = []
  for impl in ("threefry2x32", "rbg", "unsafe_rbg"):
    rows.append([impl, f"{mask_ms(gan, batch, impl, False):.2f}",
                 f"{mask_ms(gan, batch, impl, True):.2f}"])
  common.print_table(["PRNG impl", "masks, bernoulli (ms)", "masks, packed bits (ms)"], rows)


if __name__ == "__main__":
  main()
