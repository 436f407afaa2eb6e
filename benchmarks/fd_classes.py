"""How much of a run's test Fréchet distance its class proportions alone explain.

  python benchmarks/fd_classes.py --workdir=runs/mnist_fast [--draws=5]

Reads the last evaluation of a trained MNIST workdir (raw G and its EMA): the classifier's
histogram of the samples' digits and their test FD. Real validation images, drawn with
replacement in those class proportions (10,000, as many as an evaluation's samples), are
scored against the test images the same way, and so are draws in the data's own
proportions: the difference between the two is the FD that the mix of digits costs,
whatever the images look like. Prints the mean over ``--draws`` draws.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from projects.mnist import data as data_lib  # noqa: E402
from projects.mnist.metrics import classifier, features  # noqa: E402


def resampled_fd(feats: np.ndarray, labels: np.ndarray, counts, test_stats, rng) -> float:
  """FD to the test images of real images drawn with replacement, ``counts[c]`` of digit c."""
  idx = np.concatenate([rng.choice(np.flatnonzero(labels == c), int(n), replace=True)
                        for c, n in enumerate(counts)])
  return features.frechet_distance(features.gaussian_stats(feats[idx]), test_stats)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--draws", type=int, default=5)
  args = parser.parse_args()
  with open(os.path.join(args.workdir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  with open(os.path.join(args.workdir, "metrics.jsonl")) as f:
    row = [r for r in map(json.loads, f) if "class_histogram" in r][-1]
  dataset = data_lib.load(config.data)
  clf = classifier.load_or_train(dataset, cache_dir=config.evaluation.get("classifier_dir", ""))
  test_stats = features.gaussian_stats(clf.features_and_probs(dataset.test / 255.0)[0])
  val = clf.features_and_probs(dataset.validation / 255.0)[0]
  labels = np.asarray(dataset.validation_labels)
  rng = np.random.RandomState(0)
  total = sum(row["class_histogram"])
  own = np.bincount(labels, minlength=10) * total / len(labels)
  base = np.mean([resampled_fd(val, labels, np.round(own), test_stats, rng)
                  for _ in range(args.draws)])
  print(common.machine_line())
  print(f"# {args.workdir}, step {row['step']}; real validation images drawn with "
        f"replacement ({args.draws} draws), FD to the 10,000 test images")
  rows = [("real images, the data's own proportions", "—", "—", f"{base:.2f}", "—")]
  for name, prefix in (("G", ""), ("EMA of G", "ema_")):
    counts = row.get(f"{prefix}class_histogram")
    if counts is None:
      continue
    fd = np.mean([resampled_fd(val, labels, counts, test_stats, rng)
                  for _ in range(args.draws)])
    rows.append((f"real images in {name}'s proportions", " ".join(map(str, counts)),
                 f"{row[f'{prefix}frechet_distance']:.2f}", f"{fd:.2f}", f"{fd - base:.2f}"))
  common.print_table(["images", "digits 0-9", "the model's test FD", "FD of the real draw",
                      "the proportions' share"], rows)


if __name__ == "__main__":
  main()
