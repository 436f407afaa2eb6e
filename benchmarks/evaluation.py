"""Time of the feature metrics at the sizes used in training (10k samples vs 10k test images).

  python benchmarks/evaluation.py

The classifier is the project's MNIST convnet at its default size with random
weights (timing does not depend on them) and the images are uniform noise, so
no data or cached network is needed. Also compares the k-th-nearest-neighbour
search by k passes of min/argmin (used) with ``lax.top_k``.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from projects.mnist.metrics import classifier, features as metrics  # noqa: E402


def _median(fn, repeats=3):
  fn()  # compile
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def main():
  rs = np.random.RandomState(0)
  generated = rs.rand(10_000, 784).astype(np.float32)
  reference = rs.rand(10_000, 784).astype(np.float32)
  settings = classifier.TrainSettings()
  module = settings.model()
  params = module.init(jax.random.key(0), jnp.zeros((1, 784)))["params"]
  clf = classifier.Classifier(module, params, {"test_accuracy": float("nan")})
  feats, probs = clf.features_and_probs(reference)

  rows = []
  rows.append(["classifier features + probabilities, 10k images",
               f"{_median(lambda: clf.features_and_probs(generated)):.2f}"])
  rows.append(["reference statistics + k-NN radii (once per run)",
               f"{_median(lambda: metrics.FeatureScorer(clf.features_and_probs, reference)):.2f}"])
  scorer = metrics.FeatureScorer(clf.features_and_probs, reference)
  rows.append(["all metrics of 10k samples (features, FD, P/R, coverage)",
               f"{_median(lambda: scorer(generated)):.2f}"])
  rows.append(["k-NN radii, 10k x 10k, k = 5: k passes of min/argmin",
               f"{_median(lambda: metrics.knn_radii(feats, 5)):.2f}"])
  top_k = jax.jit(lambda d: -jax.lax.top_k(-d, 6)[0][:, 5])
  rows.append(["k-NN radii, 10k x 10k, k = 5: lax.top_k",
               f"{_median(lambda: metrics._batched(top_k, feats, feats, 1000)):.2f}"])  # pylint: disable=protected-access
  print(f"# {jax.device_count()} {jax.devices()[0].platform} device(s), jax {jax.__version__}; "
        f"features {feats.shape[1]}-d")
  common.print_table(["step", "median seconds (3 calls)"], rows)
  del probs


if __name__ == "__main__":
  main()
