"""Scoring a conditional generator: samples with their labels spread evenly over the digits.

Beside the unconditional MNIST metrics of those samples (the class-conditional Parzen
estimate by the paper's protocol, FD, precision/recall, coverage), whether each sample is
the digit asked for: the feature classifier's accuracy against the labels, and the
Fréchet distance of each digit's samples to that digit's test images.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from gan_jax.run import pictures
from gan_jax.run.experiment import generate
from gan_jax.state import GAN, GANState, sample_latent
from projects.mnist import evaluate
from projects.mnist.metrics import features as metrics
from projects.mnist_conditional.model import NUM_CLASSES


def even_labels(n: int) -> np.ndarray:
  """Labels 0, 1, ..., 9, 0, 1, ... for n samples: every digit equally often."""
  return np.arange(n, dtype=np.int32) % NUM_CLASSES


class ConditionalEvaluator(evaluate.Evaluator):
  """``evaluate.Evaluator`` for G(z, label), adding ``label_accuracy`` (the classifier reads
  the label asked for) and ``class_fd_mean`` / ``class_fd_max`` (per-digit FD to the test
  images of that digit) when the feature metrics are on."""

  def __init__(self, config, dataset):
    super().__init__(config, dataset)
    self.labels = even_labels(self.num_samples)
    self.class_stats = None
    if self.scorer is not None:
      test = self.scorer.ref_features  # the test images' features, in test order
      self.class_stats = [metrics.gaussian_stats(test[dataset.test_labels == c])
                          for c in range(NUM_CLASSES)]

  def samples(self, gan: GAN, state: GANState, key: jax.Array, ema: bool) -> np.ndarray:
    z = sample_latent(gan, key, (self.num_samples,))
    return generate(gan, state, z, ema=ema, cond=self.labels)

  def feature_extras(self, features: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    assert self.class_stats is not None
    fds = [metrics.frechet_distance(metrics.gaussian_stats(features[self.labels == c]),
                                    self.class_stats[c]) for c in range(NUM_CLASSES)]
    return {"label_accuracy": float(np.mean(np.argmax(probs, axis=1) == self.labels)),
            "class_fd_mean": float(np.mean(fds)), "class_fd_max": float(np.max(fds))}


def grid_inputs(gan: GAN, key: jax.Array, cols: int = 10) -> tuple[jax.Array, np.ndarray]:
  """Noise and labels of a grid with one row per digit: the same ``cols`` noise vectors in
  every row, so a column keeps its style across the digits."""
  z = sample_latent(gan, key, (cols,))
  return np.tile(np.asarray(z), (NUM_CLASSES, 1)), np.repeat(np.arange(NUM_CLASSES, dtype=np.int32),
                                                              cols)


def write_figures(gan: GAN, state: GANState, dataset: Any, root: jax.Array, workdir: str
                  ) -> list[str]:
  """``class_grid.png``: the evaluated generator, one row per digit 0-9."""
  z, labels = grid_inputs(gan, jax.random.fold_in(root, 2), cols=16)
  images = generate(gan, state, z, cond=labels)
  path = os.path.join(workdir, "class_grid.png")
  pictures.save_png(path, pictures.image_grid(images, dataset.image_shape, rows=NUM_CLASSES,
                                              cols=16))
  return [path]
