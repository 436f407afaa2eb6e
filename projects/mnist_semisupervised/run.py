"""Linear probes on a trained MNIST run's D (and E), against the same on pixels.

  python -m projects.mnist_semisupervised.run --gan_workdir=runs/mnist \
      --workdir=runs/probes [--encoder_dir=runs/inference] [--counts=100,1000,50000]

For each feature set (pixels; D's last hidden layer, of the run's checkpoint selected on
validation; E's last hidden layer when ``--encoder_dir`` holds an encoder fitted by
projects.mnist_inference.run) and each label count, ``--draws`` balanced draws of labelled
training images (10 % of the count per digit) fit a linear probe; its L2 weight is chosen
on the validation split, and it is scored once on the test split. The largest count is the
whole training split (50,000: MNIST's other 10,000 images are the validation split that
chooses the L2 weight); it has one draw. Writes results.json and prints a Markdown table
of test error (%, mean ± s.d. over draws).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import flax.serialization
import jax
import numpy as np

from gan_jax.errors import UserError, exit_on_user_error
from gan_jax.run.experiment import write_json
from projects.mnist import evaluate as mnist_evaluate
from projects.mnist_inference import encoder as encoder_lib
from projects.mnist_semisupervised import probe as probe_lib


def d_features(gan, state) -> Callable[[np.ndarray], np.ndarray]:
  """D's last hidden layer (inference mode: no dropout), as the player sows it."""
  variables = {"params": state.d.params, **state.d.collections}

  @jax.jit
  def run(x):
    _, sown = gan.discriminator.apply(variables, x, train=False, mutable=["intermediates"])
    return sown["intermediates"]["features"][0]
  return run


def e_features(encoder_dir: str, gan) -> Callable[[np.ndarray], np.ndarray]:
  path = os.path.join(encoder_dir, "encoder.msgpack")
  try:
    with open(os.path.join(encoder_dir, "results.json")) as f:
      hidden = [int(h) for h in json.load(f)["hidden"].split(",")]
    with open(path, "rb") as f:
      body = f.read()
  except (OSError, KeyError, ValueError) as e:
    raise UserError(f"--encoder_dir {encoder_dir!r} holds no encoder ({e}); fit one with "
                    f"python -m projects.mnist_inference.run --gan_workdir=... "
                    f"--workdir={encoder_dir}, or leave --encoder_dir out.") from e
  enc = encoder_lib.for_gan(gan, hidden)
  like = enc.init(jax.random.key(0), np.zeros((1, 784), np.float32))
  params = flax.serialization.from_bytes(like, body)
  return jax.jit(lambda x: encoder_lib.features(enc, params, x))


def batched(fn: Callable[[np.ndarray], Any], x: np.ndarray, batch: int = 5_000) -> np.ndarray:
  return np.concatenate([np.asarray(fn(x[i:i + batch])) for i in range(0, len(x), batch)])


def probe_table(feature_sets: dict[str, Callable[[np.ndarray], np.ndarray]], dataset,
                counts: list[int], draws: int, report: Callable[[str], None] = print
                ) -> dict[str, dict[str, Any]]:
  """{feature set: {count: {"errors": [...], "mean", "std", "l2"}}} of test error."""
  results: dict[str, dict[str, Any]] = {}
  splits = {s: getattr(dataset, s).astype(np.float32) / 255.0
            for s in ("train", "validation", "test")}
  for name, fn in feature_sets.items():
    feats = {s: batched(fn, x) for s, x in splits.items()}
    results[name] = {}
    for count in counts:
      n_draws = 1 if count == len(dataset.train) else draws
      errors, l2s = [], []
      for seed in range(n_draws):
        idx = probe_lib.balanced_draw(dataset.train_labels, count, seed)
        p = probe_lib.fit_probe(feats["train"][idx], dataset.train_labels[idx],
                                feats["validation"], dataset.validation_labels)
        errors.append(p.error(feats["test"], dataset.test_labels))
        l2s.append(p.l2)
      results[name][str(count)] = {"errors": errors, "mean": float(np.mean(errors)),
                                   "std": float(np.std(errors)), "l2": l2s}
      report(f"{name}, {count} labels: test error {100 * np.mean(errors):.2f}% ± "
             f"{100 * np.std(errors):.2f} ({n_draws} draw{'s' * (n_draws > 1)})")
  return results


def markdown(results: dict[str, dict[str, Any]], counts: list[int]) -> str:
  lines = ["| features | " + " | ".join(f"{c} labels" for c in counts) + " |",
           "|---|" + "---|" * len(counts)]
  for name, by_count in results.items():
    cells = [f"{100 * by_count[str(c)]['mean']:.2f} ± {100 * by_count[str(c)]['std']:.2f}"
             for c in counts]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--gan_workdir", required=True, help="a trained run of experiments/mnist.py")
  p.add_argument("--workdir", required=True, help="where results.json is written")
  p.add_argument("--checkpoint", default="best")
  p.add_argument("--encoder_dir", default="", help="an encoder from projects.mnist_inference")
  p.add_argument("--counts", default="100,1000,50000")
  p.add_argument("--draws", type=int, default=3)
  p.add_argument("--manual_dir", default="")
  p.add_argument("--data_dir", default="")
  args = p.parse_args(argv)
  try:
    counts = [int(c) for c in args.counts.split(",")]
  except ValueError as e:
    raise UserError(f"--counts is {args.counts!r}; give label counts separated by commas, "
                    f"e.g. 100,1000,50000.") from e
  _, dataset, gan, state, described = mnist_evaluate.load_run(
      args.gan_workdir, args.checkpoint, manual_dir=args.manual_dir, data_dir=args.data_dir)
  for count in counts:  # every count checked before anything is fitted
    probe_lib.balanced_draw(dataset.train_labels, count, 0)
  feature_sets = {"pixels": lambda x: x, "D's last hidden layer": d_features(gan, state)}
  if args.encoder_dir:
    feature_sets["E's last hidden layer"] = e_features(args.encoder_dir, gan)
  start = time.time()
  print(f"Probing {described} of {args.gan_workdir}.", flush=True)
  results = probe_table(feature_sets, dataset, counts, args.draws)
  table = markdown(results, counts)
  os.makedirs(args.workdir, exist_ok=True)
  write_json(os.path.join(args.workdir, "results.json"),
             {"gan_workdir": args.gan_workdir, "checkpoint": described, "counts": counts,
              "draws": args.draws, "seconds": round(time.time() - start, 1),
              "results": results})
  print(f"Test error (%), mean ± s.d. over draws:\n{table}", flush=True)
  return results


if __name__ == "__main__":
  exit_on_user_error(main)
