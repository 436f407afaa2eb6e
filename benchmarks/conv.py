"""The open core's convolutional players: the lax.scan loop against a Python loop over a
jitted one-iteration step, on this machine.

  python benchmarks/conv.py [--features 64] [--batch 64] [--chunk 20] [--rounds 5]

A DCGAN-style pair at MNIST's size (gan_jax.ConvGenerator / ConvDiscriminator:
G Dense -> 7x7x2f -> BatchNorm/ReLU -> 4x4 stride-2 transposed convolutions; D two
4x4 stride-2 convolutions with leaky ReLU), Adam (2e-4, b1 0.5), synthetic uint8
data. Prints iterations/s of both loops and of the scan loop with each kernel set
(``kernels="plain"``: XLA's own convolution gradients; ``"cpu"``: kernel gradients as
matmuls of patches, which XLA:CPU runs far faster than its own), interleaved.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import gan_jax  # noqa: E402
from benchmarks import common  # noqa: E402
from benchmarks.throughput import KERNELS, interleaved_rates, per_step_runner, scan_runner  # noqa: E402

SHAPE, N_TRAIN = (28, 28, 1), 10_000


def conv_gan(features: int) -> gan_jax.GAN:
  return gan_jax.GAN(
      generator=gan_jax.ConvGenerator(image_shape=SHAPE, features=features),
      discriminator=gan_jax.ConvDiscriminator(image_shape=SHAPE, features=features),
      g_optimizer=optax.adam(2e-4, b1=0.5), d_optimizer=optax.adam(2e-4, b1=0.5),
      latent_dim=100)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--features", type=int, default=64)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--chunk", type=int, default=20, help="iterations per timed call")
  parser.add_argument("--rounds", type=int, default=5)
  args = parser.parse_args()
  gan = conv_gan(args.features)
  data = np.random.RandomState(0).randint(0, 256, (N_TRAIN, int(np.prod(SHAPE)))).astype(
      np.uint8)
  runners = {
      "lax.scan loop": scan_runner(gan, data, args.batch, args.chunk),
      "Python loop over a jitted 1-iteration step": per_step_runner(gan, data, args.batch,
                                                                    args.chunk),
  }
  for kernels in ("plain", "cpu"):
    if kernels != KERNELS:  # the first row already uses the default's
      runners[f"lax.scan loop, kernels={kernels!r}"] = scan_runner(gan, data, args.batch,
                                                                  args.chunk, kernels)
  rates = interleaved_rates(runners, args.chunk, args.rounds)
  print(common.machine_line())
  print(f"# DCGAN-style players, features {args.features}, image {SHAPE}, batch {args.batch}, "
        f"{args.chunk} iterations per call, median of {args.rounds} interleaved rounds; "
        f"jax {jax.__version__}, {jax.devices()[0].platform}, default kernels={KERNELS}")
  common.print_table(["loop", "it/s", "ms/it"],
                     [[k, f"{r:.1f}", f"{1e3 / r:.1f}"] for k, r in rates.items()])
  scan, steps = list(rates.values())[:2]
  print(f"\nscan / per-step: {scan / steps:.2f}x")


if __name__ == "__main__":
  main()
