"""Does the bfloat16 compute mode learn what float32 learns? The paper's MNIST GAN trained
for a fixed number of iterations in both modes and several seeds, then scored alike.

  python benchmarks/bf16_quality.py --mnist_dir DIR [--steps 5000] [--seeds 2]

Each run is ``experiments/mnist.py`` (the authors' settings) with ``model.dtype`` set,
trained by the library's driver into a temporary workdir and evaluated at its last
step: the validation Parzen estimate (sigma chosen on validation[:1000], the
log-likelihood of validation[1000:]) and the Fréchet distance on the feature
classifier, for raw G and its EMA. Prints one row per run, the mean and spread per
mode, and the wall time of each run. Needs the four MNIST files (``--mnist_dir``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from gan_jax.run import train  # noqa: E402
from projects.mnist.experiment import MNIST  # noqa: E402

KEYS = ("val_parzen_ll", "ema_val_parzen_ll", "val_frechet_distance",
        "ema_val_frechet_distance")


def run(dtype: str, seed: int, steps: int, mnist_dir: str) -> tuple[dict, float]:
  config = common.load_config("experiments/mnist.py")
  config.model.dtype, config.seed = dtype, seed
  config.num_train_steps = config.eval_every = config.checkpoint_every = steps
  config.data.manual_dir = mnist_dir
  config.parallel = "none"
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.time()
    train.train_and_evaluate(config, workdir, MNIST)
    seconds = time.time() - t0
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      rows = [json.loads(line) for line in f if line.strip()]
  return next(r for r in reversed(rows) if "val_parzen_ll" in r), seconds


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--mnist_dir", required=True, help="folder with the four MNIST .gz files")
  parser.add_argument("--steps", type=int, default=5000)
  parser.add_argument("--seeds", type=int, default=2)
  args = parser.parse_args()
  results = {}
  for seed in range(args.seeds):
    for dtype in ("float32", "bfloat16"):
      results[dtype, seed] = run(dtype, seed, args.steps, args.mnist_dir)
  print(common.machine_line())
  print(f"# experiments/mnist.py, {args.steps} iterations, scored at the last step (validation "
        f"split only)")
  common.print_table(["compute", "seed", "val Parzen: G / EMA", "val FD: G / EMA", "wall"],
                     [[dtype, seed, f"{r[KEYS[0]]:.1f} / {r[KEYS[1]]:.1f}",
                       f"{r[KEYS[2]]:.2f} / {r[KEYS[3]]:.2f}", f"{s:.0f} s"]
                      for (dtype, seed), (r, s) in results.items()])
  print()
  for dtype in ("float32", "bfloat16"):
    rows = [r for (d, _), (r, _) in results.items() if d == dtype]
    parts = []
    for key in KEYS:
      values = [r[key] for r in rows]
      spread = statistics.stdev(values) if len(values) > 1 else float("nan")
      parts.append(f"{key} {statistics.mean(values):.2f} ± {spread:.2f}")
    print(f"{dtype}: " + ", ".join(parts) + " (mean ± s.d. over seeds)")


if __name__ == "__main__":
  main()
