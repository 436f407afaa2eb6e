"""Evaluate a trained generator: the paper's Parzen-window log-likelihood on MNIST, and
metrics on the features of an MNIST classifier."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from gan_jax import build, checkpoint, data as data_lib, schema
from gan_jax.errors import UserError
from gan_jax.evaluation import classifier, metrics, parzen
from gan_jax.state import GAN, GANState, sample_latent

NUM_SAMPLES = 10_000  # the authors' protocol: 10k kernel centres,
NUM_VALIDATION = 1_000  # sigma chosen on the first 1k validation images,
# and the whole test set for the reported mean.


@functools.partial(jax.jit, static_argnums=0)
def _apply_generator(gan: GAN, g_params: Any, z: jax.Array) -> jax.Array:
  return gan.generator.apply({"params": g_params}, z)


def generate(gan: GAN, g_params: Any, z: jax.Array, batch: int = 2_000) -> np.ndarray:
  """G(z) for noise ``z`` [n, latent], as a float32 NumPy array [n, features]."""
  return np.concatenate([np.asarray(_apply_generator(gan, g_params, z[i:i + batch]))
                         for i in range(0, len(z), batch)])


class Evaluator:
  """Scores generators on ``dataset`` as ``config.evaluation`` asks; built once per run.

  Parzen: the paper's protocol. Feature metrics: Fréchet distance, classifier
  score, precision/recall and class coverage on the features of the cached MNIST
  classifier (trained on first use), against the test images.
  """

  def __init__(self, config: ml_collections.ConfigDict, dataset: data_lib.Dataset):
    ev = config.evaluation
    self.dataset = dataset
    self.parzen = bool(ev.parzen)
    self.num_samples = int(ev.get("num_samples", NUM_SAMPLES))
    self.scorer = None
    self.classifier_accuracy = None
    if ev.get("classifier_metrics", False):
      clf = classifier.load_or_train(dataset, cache_dir=ev.get("classifier_dir", ""),
                                     verbose=jax.process_index() == 0)
      self.classifier_accuracy = clf.test_accuracy
      self.scorer = metrics.FeatureScorer(clf.features_and_probs, dataset.test / 255.0,
                                          k=int(ev.get("nearest_k", 5)))

  @property
  def active(self) -> bool:
    return self.parzen or self.scorer is not None

  def __call__(self, gan: GAN, state: GANState, key: jax.Array) -> dict[str, Any]:
    """The metrics of ``state``'s generator, as a flat dict (plus the class histogram)."""
    samples = generate(gan, state.g_params, sample_latent(gan, key, (self.num_samples,)))
    out: dict[str, Any] = {"step": int(state.step)}
    if self.parzen:
      res = parzen.parzen_evaluate(samples, self.dataset.validation[:NUM_VALIDATION] / 255.0,
                                   self.dataset.test / 255.0)
      out.update(parzen_ll=res.mean, parzen_ll_stderr=res.stderr, parzen_sigma=res.sigma)
    if self.scorer is not None:
      out.update(self.scorer(samples))
    return out


def format_table(workdir: str, result: dict[str, Any]) -> str:
  """A Markdown table of one evaluation."""
  rows = [("workdir", workdir), ("step", str(result["step"]))]
  if "parzen_ll" in result:
    rows += [("Parzen log-likelihood (nats)",
              f"{result['parzen_ll']:.1f} ± {result['parzen_ll_stderr']:.1f} "
              f"(sigma {result['parzen_sigma']:.3f})")]
  if "frechet_distance" in result:
    covered = result["classes_covered"]
    rows += [("Fréchet distance (classifier features)", f"{result['frechet_distance']:.3f}"),
             ("classifier score (max 10)", f"{result['classifier_score']:.2f}"),
             (f"precision / recall (k={result['pr_k']})", f"{result['precision']:.3f} / {result['recall']:.3f}"),
             ("digit classes covered", f"{covered} of 10" + (
                 "  <- MODE COLLAPSE: some digits are (nearly) never generated"
                 if covered < 10 else "")),
             ("class KL to uniform (nats, 0 = balanced)", f"{result['class_kl_to_uniform']:.4f}"),
             ("class histogram (0-9)", " ".join(map(str, result["class_histogram"])))]
  return "\n".join(["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Evaluate the newest checkpoint in ``workdir``; print a table and write eval.json."""
  schema.check(config, num_devices=1)  # evaluation runs on one device
  ckpt = checkpoint.Checkpointer(workdir)
  try:
    ckpt.check_resumable(config)
  finally:
    ckpt.close()
  dataset = data_lib.load(config.data)
  gan, root, like = build.make_gan_and_state(config, dataset)
  state = checkpoint.restore_latest(workdir, like)
  if state is None:
    raise UserError(f"There is no checkpoint in {os.path.join(workdir, 'checkpoints')}; train "
                    f"first (python launch.py --config=... --workdir={workdir}) or pass the "
                    f"--workdir of a finished run.")
  evaluator = Evaluator(config, dataset)
  if not evaluator.active:
    raise UserError("config.evaluation turns every metric off (parzen and classifier_metrics "
                    "are both False); enable one, e.g. --config.evaluation.parzen=True.")
  result = evaluator(gan, state, jax.random.fold_in(root, 3))
  tmp = os.path.join(workdir, "eval.json.tmp")
  with open(tmp, "w") as f:
    json.dump(result, f, indent=2)
  os.replace(tmp, os.path.join(workdir, "eval.json"))
  print(format_table(workdir, result), flush=True)
  return result
