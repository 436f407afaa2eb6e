"""Fit E to a trained MNIST run's generator and measure it.

  python -m projects.mnist_inference.run --gan_workdir=runs/mnist --workdir=runs/inference \
      [--steps=20000] [--manual_dir=/path/to/mnist]

E is trained on fresh pairs (z, G(z)) of the run's model selected on validation (never on a
real image; the latent error plus --pixel_weight times the pixel error of G(E(G(z)))), then
measured: latent recovery on 10,000 fresh samples (mean squared error of E(G(z)) against
z, per dimension, beside the prior's variance, 1) and reconstructions
G(E(x)) of the 10,000 validation images and of the 10,000 test images (pixel MSE, and the
share that the feature classifier reads as the image's own digit); choose E's settings
(--pixel_weight, --steps, --hidden) on the validation figures. Writes results.json,
reconstructions.png (rows of test images, each above its reconstructions) and
encoder.msgpack (E's parameters).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import flax.serialization
import jax
import numpy as np

from gan_jax.errors import UserError, exit_on_user_error
from gan_jax.run import pictures
from gan_jax.run.experiment import generate, write_json
from gan_jax.state import sample_latent
from projects.mnist import evaluate as mnist_evaluate
from projects.mnist.metrics import classifier
from projects.mnist_inference import encoder as encoder_lib

NUM_LATENT = 10_000  # fresh samples for latent recovery
GRID_ROWS, GRID_COLS = 5, 10  # pairs of rows: test images above their reconstructions


def reconstruct(gan, state, enc, params, images: np.ndarray, labels: np.ndarray, clf
                ) -> tuple[float, float]:
  """(pixel MSE of G(E(x)) against x, the share the classifier reads as x's own digit)."""
  x = images.astype(np.float32) / 255.0
  x_hat = generate(gan, state, np.asarray(encoder_lib.encode(enc, params, x)))
  read = clf.features_and_probs(x_hat)[1].argmax(1)
  return float(np.mean((x_hat - x) ** 2)), float(np.mean(read == labels))


def measure(gan, state, enc, params, dataset, clf, rng) -> dict[str, Any]:
  """Latent recovery on fresh samples, and reconstructions of the validation split (to choose
  E's settings on) and of the test split."""
  z = np.asarray(sample_latent(gan, rng, (NUM_LATENT,)))
  z_hat = np.asarray(encoder_lib.encode(enc, params, generate(gan, state, z)))
  val_mse, val_same = reconstruct(gan, state, enc, params, dataset.validation,
                                  dataset.validation_labels, clf)
  mse, same = reconstruct(gan, state, enc, params, dataset.test, dataset.test_labels, clf)
  return {"latent_mse": float(np.mean((z_hat - z) ** 2)), "prior_variance": 1.0,
          "val_reconstruction_pixel_mse": val_mse, "val_same_digit": val_same,
          "reconstruction_pixel_mse": mse, "same_digit": same,
          # the classifier's own accuracy on these images, recorded when it was trained
          "classifier_on_test_images": float(clf.test_accuracy),
          "num_test": int(len(dataset.test))}


def grid(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
  rows = []
  for r in range(GRID_ROWS):
    sl = slice(r * GRID_COLS, (r + 1) * GRID_COLS)
    rows += [x[sl], x_hat[sl]]
  return pictures.image_grid(np.concatenate(rows), (28, 28, 1), rows=2 * GRID_ROWS,
                             cols=GRID_COLS)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--gan_workdir", required=True, help="a trained run of experiments/mnist.py")
  p.add_argument("--workdir", required=True, help="where E and its results are written")
  p.add_argument("--checkpoint", default="best", help="best (default), latest or a step")
  p.add_argument("--steps", type=int, default=20_000, help="E's Adam steps (batch 100)")
  p.add_argument("--learning_rate", type=float, default=1e-3)
  p.add_argument("--pixel_weight", type=float, default=30.0,
                 help="weight of |G(E(G(z))) - G(z)|^2 per pixel beside the latent error")
  p.add_argument("--hidden", default="1200,1200", help="E's hidden widths")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--manual_dir", default="", help="the MNIST files, as config.data.manual_dir")
  p.add_argument("--data_dir", default="")
  p.add_argument("--classifier_dir", default="")
  args = p.parse_args(argv)
  if args.steps <= 0:
    raise UserError(f"--steps is {args.steps}; E needs at least one step (20,000 by default).")
  config, dataset, gan, state, described = mnist_evaluate.load_run(
      args.gan_workdir, args.checkpoint, manual_dir=args.manual_dir, data_dir=args.data_dir)
  os.makedirs(args.workdir, exist_ok=True)
  clf = classifier.load_or_train(dataset, cache_dir=args.classifier_dir or
                                 config.evaluation.get("classifier_dir", ""))
  which = "its EMA" if state.ema_params is not None else "raw G"
  print(f"Fitting E to {described} of {args.gan_workdir} ({which}), {args.steps} steps.",
        flush=True)
  enc = encoder_lib.for_gan(gan, [int(h) for h in args.hidden.split(",")])
  rng = jax.random.key(args.seed)
  start = time.time()
  params, losses = encoder_lib.fit_encoder(
      gan, state, enc, jax.random.fold_in(rng, 1), steps_total=args.steps,
      learning_rate=args.learning_rate, pixel_weight=args.pixel_weight,
      report=lambda step, loss: print(f"step {step}/{args.steps}  latent MSE {loss:.4f}",
                                      flush=True) if step % 5_000 == 0 else None)
  fit_seconds = time.time() - start
  result = {"gan_workdir": args.gan_workdir, "checkpoint": described, "steps": args.steps,
            "pixel_weight": args.pixel_weight,
            "seed": args.seed, "fit_seconds": round(fit_seconds, 1), "train_losses": losses,
            **measure(gan, state, enc, params, dataset, clf, jax.random.fold_in(rng, 2))}
  x = dataset.test[:GRID_ROWS * GRID_COLS].astype(np.float32) / 255.0
  x_hat = generate(gan, state, np.asarray(encoder_lib.encode(enc, params, x)))
  pictures.save_png(os.path.join(args.workdir, "reconstructions.png"), grid(x, x_hat))
  with open(os.path.join(args.workdir, "encoder.msgpack"), "wb") as f:
    f.write(flax.serialization.to_bytes(params))
  write_json(os.path.join(args.workdir, "results.json"), {**result, "hidden": args.hidden})
  print(f"E(G(z)) against z: MSE {result['latent_mse']:.4f} per dimension (prior variance "
        f"1.0); G(E(x)) of the validation images: pixel MSE "
        f"{result['val_reconstruction_pixel_mse']:.4f}, the same digit for "
        f"{100 * result['val_same_digit']:.1f}%; of {result['num_test']} test images: pixel MSE "
        f"{result['reconstruction_pixel_mse']:.4f}, the same digit for "
        f"{100 * result['same_digit']:.1f}% (the classifier reads the test images themselves "
        f"right for {100 * result['classifier_on_test_images']:.1f}%); E fitted in "
        f"{fit_seconds:.0f} s. Written: {args.workdir}/results.json, reconstructions.png.",
        flush=True)
  return result


if __name__ == "__main__":
  exit_on_user_error(main)
