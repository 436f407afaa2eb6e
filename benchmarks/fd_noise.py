"""How much the validation Fréchet distance moves between draws of samples: the noise the
EMA guard's tolerance must stand above.

  python benchmarks/fd_noise.py --workdir=runs/mnist [--seeds=8] [--num_samples=10000]

For each checkpoint of a trained MNIST workdir, the raw G and its EMA are each scored on
``--seeds`` independent draws of noise: FD between the samples' classifier features and the
validation images' (``val_frechet_distance``, the guard's metric). Prints the mean, the
standard deviation over draws, the relative standard deviation, and the EMA's relative
difference from raw G on the same noise (as an evaluation compares them), with its spread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from gan_jax.run.experiment import generate  # noqa: E402
from gan_jax.state import sample_latent  # noqa: E402
from projects.mnist import data as data_lib, evaluate, model  # noqa: E402
from projects.mnist.metrics import classifier, features  # noqa: E402


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--seeds", type=int, default=8)
  parser.add_argument("--num_samples", type=int, default=10_000)
  args = parser.parse_args()
  with open(os.path.join(args.workdir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  dataset = data_lib.load(config.data)
  clf = classifier.load_or_train(dataset, cache_dir=config.evaluation.get("classifier_dir", ""))
  val = features.gaussian_stats(clf.features_and_probs(dataset.validation / 255.0)[0])
  gan = model.make_gan([config], dataset)
  like = model.initial_state(config, dataset, gan)
  steps = sorted(int(s) for s in os.listdir(os.path.join(args.workdir, "checkpoints"))
                 if s.isdigit())
  print(common.machine_line())
  print(f"# {args.seeds} draws of {args.num_samples} samples each; FD against the "
        f"10,000 validation images")
  print("| step | generator | FD mean | s.d. over draws | relative s.d. |")
  print("|---|---|---|---|---|")
  for step in steps:
    state, _ = evaluate._load(args.workdir, str(step), like)  # pylint: disable=protected-access
    fd_of = {}
    for ema in (False, True):
      fds = []
      for seed in range(args.seeds):
        z = sample_latent(gan, jax.random.key(1000 + seed), (args.num_samples,))
        feats = clf.features_and_probs(generate(gan, state, z, ema=ema))[0]
        fds.append(features.frechet_distance(features.gaussian_stats(feats), val))
      fds = fd_of[ema] = np.asarray(fds)
      print(f"| {step} | {'EMA' if ema else 'raw G'} | {fds.mean():.3f} | {fds.std(ddof=1):.3f} "
            f"| {fds.std(ddof=1) / fds.mean():.2%} |", flush=True)
    diff = fd_of[True] / fd_of[False] - 1.0  # per draw: raw G and EMA on the same noise
    print(f"| {step} | EMA / raw G − 1, same noise | {diff.mean():+.2%} | "
          f"{diff.std(ddof=1):.2%} | |", flush=True)


if __name__ == "__main__":
  main()
