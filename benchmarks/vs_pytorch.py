"""gan_jax against PyTorch (eager and torch.compile) on the paper's MNIST model and update.

  python benchmarks/vs_pytorch.py [--iterations 100] [--rounds 5] [--threads N]

Both sides run exactly the authors' MNIST GAN (experiments/mnist.py): G 100 ->
1200 ReLU -> 1200 ReLU -> 784 sigmoid; D maxout 240x5 -> maxout 240x5 -> 1 with
dropout (keep 0.8 on pixels, 0.5 on hidden units); uniform noise; the
simultaneous update (both players' gradients from one minibatch and the same
samples); batch 100; SGD with pylearn2-style momentum and the decaying learning
rate. Minibatches are drawn on the device from a synthetic uint8 training set
of MNIST's shape on both sides (pixel values do not change the work).

PyTorch runs a Python loop calling the modules, autograd and a fused (foreach)
optimizer update each iteration: eager, with the modules and the update through
torch.compile, and eager under bfloat16 autocast. gan_jax is timed as a user runs
it: the lax.scan loop (TrainLoop), ``iterations`` iterations per compiled call, in
float32 and in its bfloat16 compute mode. The rounds are interleaved so that
drifts in machine load hit every row alike; the table shows medians. The first five
rows time the update alone (gan_jax with ``gan.ema_decay=0`` and ``gan.grad_norms=False``);
the last two add, on both sides, what experiments/mnist.py keeps beside the update: both
players' gradient norms at every step and an EMA of G. The run also
measures the machine's bf16/fp32 matmul ratio and prints the targets against it.

Needs torch (`pip install torch`); without it the script says so and exits.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import gan_jax  # noqa: E402
from benchmarks import common  # noqa: E402
from gan_jax.kernels import cpu  # noqa: E402
from gan_jax.run import build  # noqa: E402

N_TRAIN, DATA_DIM = 50_000, 784


def torch_runner(torch, config, data: np.ndarray, iterations: int, mode: str = "eager",
                 extras: bool = False):
  """The paper's GAN as a PyTorch loop; returns a call running ``iterations``.

  ``mode``: "eager"; "compile" (G, D and the optimizer update through torch.compile, so
  their forward and backward graphs are compiled, with autograd between them); "bf16"
  (eager under ``torch.autocast("cpu", torch.bfloat16)``: bf16 products, float32
  parameters, losses and updates). The optimizer update is one fused ``torch._foreach``
  pass per step in every mode. ``extras``: also what gan_jax's MNIST config does beside the
  update, each as one foreach pass: both players' gradient norms and an EMA of G (decay
  ``config.gan.ema_decay``).
  """
  nn = torch.nn
  g_cfg, d_cfg = config.model.generator, config.model.discriminator
  opt, batch, latent = config.optimizer, config.batch_size, config.model.latent_dim
  torch.manual_seed(0)

  def uniform_(module, scale):
    for p in module.parameters():
      if p.dim() > 1:
        nn.init.uniform_(p, -scale, scale)
      else:
        nn.init.zeros_(p)
    return module

  class Maxout(nn.Module):
    def __init__(self, fan_in, units, pieces):
      super().__init__()
      self.linear, self.units, self.pieces = nn.Linear(fan_in, units * pieces), units, pieces

    def forward(self, x):
      z = self.linear(x)  # [B, pieces * units], piece-major like gan_jax
      return z.view(-1, self.pieces, self.units).amax(dim=1)

  widths = list(g_cfg.hidden)
  g_layers, fan_in = [], latent
  for w in widths:
    g_layers += [nn.Linear(fan_in, w), nn.ReLU()]
    fan_in = w
  g = uniform_(nn.Sequential(*g_layers, nn.Linear(fan_in, DATA_DIM), nn.Sigmoid()),
               g_cfg.init_scale)
  d_layers, fan_in = [nn.Dropout(1 - d_cfg.input_keep)], DATA_DIM
  for i, w in enumerate(d_cfg.hidden):
    if i:
      d_layers.append(nn.Dropout(1 - d_cfg.hidden_keep))
    d_layers.append(Maxout(fan_in, w, d_cfg.pieces))
    fan_in = w
  d = uniform_(nn.Sequential(*d_layers, nn.Dropout(1 - d_cfg.hidden_keep),
                             nn.Linear(fan_in, 1)), d_cfg.init_scale)
  g.train()
  d.train()
  g_params, d_params = list(g.parameters()), list(d.parameters())
  params = g_params + d_params
  velocity = [torch.zeros_like(p) for p in params]
  ema = [p.detach().clone() for p in g_params]
  ema_weight = 1.0 - config.gan.ema_decay

  def update(grads, lr, momentum):  # pylearn2's momentum: v <- m v - lr g; p <- p + v
    torch._foreach_mul_(velocity, momentum)
    torch._foreach_add_(velocity, torch._foreach_mul(grads, lr), alpha=-1.0)
    torch._foreach_add_(params, velocity)

  g_run, d_run = g, d
  if mode == "compile":
    g_run, d_run, update = torch.compile(g), torch.compile(d), torch.compile(update)
  autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if mode == "bf16" else
              torch.autocast("cpu", enabled=False))
  x_all = torch.from_numpy(data)  # uint8 [N, 784]
  r = float(np.sqrt(3.0))
  bce = nn.functional.binary_cross_entropy_with_logits
  ones, zeros = torch.ones(batch), torch.zeros(batch)
  state = {"t": 0}

  def one_iteration():
    t = state["t"]
    idx = torch.randint(0, N_TRAIN, (batch,))
    real = x_all[idx].float().mul_(1.0 / 255.0)
    z = torch.empty(batch, latent).uniform_(-r, r)
    with autocast:
      fake = g_run(z)
      real_logits, fake_logits = d_run(real).squeeze(1), d_run(fake).squeeze(1)
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    d_loss = 0.5 * (bce(real_logits, ones) + bce(fake_logits, zeros))
    g_loss = bce(fake_logits, ones)  # non-saturating
    d_grads = torch.autograd.grad(d_loss, d_params, retain_graph=True)
    g_grads = torch.autograd.grad(g_loss, g_params)
    lr = max(opt.learning_rate / opt.decay_factor**t, opt.min_learning_rate)
    epoch = t // (N_TRAIN // batch)
    frac = min(max((epoch - opt.momentum_start_epoch) /
                   max(opt.momentum_saturate_epoch - opt.momentum_start_epoch, 1), 0.0), 1.0)
    momentum = opt.init_momentum + (opt.final_momentum - opt.init_momentum) * frac
    with torch.no_grad():  # scalars as tensors, so that the compiled update is not re-traced
      update(list(g_grads + d_grads), torch.tensor(lr), torch.tensor(momentum))
      if extras:  # logged like gan_jax's metrics: one norm per player, and G's EMA
        state["norms"] = [torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gr)))
                          for gr in (d_grads, g_grads)]
        torch._foreach_lerp_(ema, g_params, ema_weight)
    state["t"] = t + 1
    return d_loss

  def call():
    loss = None
    for _ in range(iterations):
      loss = one_iteration()
    return float(loss.detach())  # waits for the last iteration

  return call


def jax_runner(config, data: np.ndarray, iterations: int):
  gan = build.make_gan(config, data_dim=DATA_DIM, batches_per_epoch=N_TRAIN // config.batch_size)
  tl = gan_jax.TrainLoop(gan, gan_jax.ArraySource(N_TRAIN), global_batch=config.batch_size,
                         steps_per_call=iterations, parallel="none")
  ddata = tl.put_data(data)
  box = [tl.put_state(gan_jax.init_state(gan, jax.random.key(0), data[:1]))]

  def call():
    box[0], metrics = tl(box[0], ddata, jax.random.key(1))
    return float(metrics["d_loss"][-1])

  return call


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--iterations", type=int, default=100, help="iterations per timed call")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--threads", type=int, default=0,
                      help="torch.set_num_threads (0: PyTorch's default, one per core)")
  args = parser.parse_args()
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    print("PyTorch is not installed here, so there is nothing to compare with; "
          "`pip install torch` and run this again.")
    return
  if args.threads:
    torch.set_num_threads(args.threads)

  config = common.load_config("experiments/mnist.py")
  bf16 = common.load_config("experiments/mnist.py")
  bf16.model.dtype = "bfloat16"
  data = np.random.RandomState(0).randint(0, 256, (N_TRAIN, DATA_DIM)).astype(np.uint8)
  n = args.iterations
  # The update alone on both sides: gan_jax without G's EMA and the per-step gradient
  # norms, which its MNIST config adds (and PyTorch with the same two, in the last rows).
  full = common.load_config("experiments/mnist.py")
  for c in (config, bf16):
    c.gan.ema_decay, c.gan.grad_norms = 0.0, False
  eager, compiled = "PyTorch eager (float32)", "PyTorch torch.compile (float32)"
  jax32, jax16 = "gan_jax lax.scan loop (float32)", "gan_jax lax.scan loop (bfloat16 compute)"
  runners = {
      eager: torch_runner(torch, config, data, n),
      compiled: torch_runner(torch, config, data, n, "compile"),
      "PyTorch eager (bfloat16 autocast)": torch_runner(torch, config, data, n, "bf16"),
      jax32: jax_runner(config, data, n),
      jax16: jax_runner(bf16, data, n),
      "PyTorch eager (float32) + gradient norms + EMA of G":
          torch_runner(torch, full, data, n, extras=True),
      "gan_jax (float32) + gradient norms + EMA of G (experiments/mnist.py)":
          jax_runner(full, data, n),
  }
  for call in runners.values():  # compile / warm up, and check the losses are finite
    assert np.isfinite(call())
  dot32 = common.matmul_gflops()
  dot16 = common.matmul_gflops(dtype=jnp.bfloat16)
  times = {k: [] for k in runners}
  for _ in range(args.rounds):
    for k, call in runners.items():
      t0 = time.perf_counter()
      call()
      times[k].append(time.perf_counter() - t0)
  rates = {k: n / statistics.median(v) for k, v in times.items()}
  dot32, dot16 = max(dot32, common.matmul_gflops()), max(dot16, common.matmul_gflops(
      dtype=jnp.bfloat16))
  base = rates[eager]
  print(common.machine_line())
  print(f"# the paper's MNIST GAN, batch {config.batch_size}, simultaneous update; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), jax {jax.__version__}; "
        f"median of {args.rounds} interleaved rounds of {n} iterations")
  common.print_table(["implementation", "iterations/s", "ms/iteration", "vs PyTorch eager"],
                     [[k, f"{r:.1f}", f"{1e3 / r:.1f}", f"{r / base:.2f}x"]
                      for k, r in rates.items()])
  ratio = dot16 / dot32
  speedup = rates[jax16] / rates[jax32]
  print(f"\n2048^3 jnp.dot: float32 {dot32:.0f} GFLOP/s, bfloat16 (float32 accumulation) "
        f"{dot16:.0f}: bf16/fp32 ratio {ratio:.2f}")
  print(f"gan_jax float32 vs PyTorch eager {rates[jax32] / base:.2f}x, vs torch.compile "
        f"{rates[jax32] / rates[compiled]:.2f}x (target >= 2x both)")
  # The three products of G's 1200 x 1200 layer at batch 100. The weight gradient contracts
  # over the batch (K = 100): as a plain product XLA:CPU converts its bf16 operands to float32
  # and runs it at the float32 rate; the bf16 mode computes it as a row-padded NN product
  # (kernels.cpu.weight_gradient), which the bf16 units take.
  b, w = config.batch_size, config.model.generator.hidden[-1]
  products = {"forward x @ W": ((b, w), (w, w), (1, 0), None),
              "input gradient g @ W^T": ((b, w), (w, w), (1, 1), None),
              "weight gradient x^T @ g, plain": ((b, w), (b, w), (0, 0), None),
              "weight gradient x^T @ g, as the bf16 mode runs it": (
                  (b, w), (b, w), (0, 0), cpu.weight_gradient)}
  rows = []
  for name, (lhs, rhs, contract, product) in products.items():
    f32 = common.product_gflops(lhs, rhs, contract)
    b16 = common.product_gflops(lhs, rhs, contract, jnp.bfloat16, product=product)
    rows.append([name, f"{f32:.0f}", f"{b16:.0f}", f"{b16 / f32:.2f}"])
  print(f"\nthe products of one {w} x {w} layer at batch {b} (GFLOP/s):")
  common.print_table(["product", "float32", "bfloat16 (float32 results)", "ratio"], rows)
  shapes = common.iteration_matmul_shapes(
      build.make_gan(config, data_dim=DATA_DIM, batches_per_epoch=N_TRAIN // config.batch_size),
      config.batch_size, DATA_DIM)
  matched = common.shape_matched_seconds(shapes) / common.shape_matched_seconds(
      shapes, dtype=jnp.bfloat16)
  print(f"the iteration's own matmuls back to back (shape-matched): bfloat16 {matched:.2f}x "
        f"float32; gan_jax bfloat16 reaches {rates[jax16] / rates[jax32]:.2f}x")
  if ratio >= 1.3:
    print(f"gan_jax bfloat16 / float32: {speedup:.2f}x against 0.75 x the dot ratio = "
          f"{0.75 * ratio:.2f}x (target); bfloat16 vs PyTorch eager float32: "
          f"{rates[jax16] / base:.2f}x (target >= 3x)")
  else:
    print(f"this CPU's bf16 dots are not faster than float32 ones (ratio {ratio:.2f} < 1.3): "
          f"no bf16 target applies, and the configs keep float32 (bf16/fp32 here "
          f"{speedup:.2f}x)")


if __name__ == "__main__":
  main()
