"""Evaluate a trained generator: the paper's Parzen-window log-likelihood on MNIST, and
metrics on the features of an MNIST classifier."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from gan_jax.errors import UserError
from gan_jax.run import checkpoint, schema
from gan_jax.run.experiment import generate
from gan_jax.run.selection import EMA_PREFIX  # EMA metrics: ema_parzen_ll, ...
from gan_jax.state import GAN, LAYOUT_VERSION, GANState, sample_latent
from projects.mnist import data as data_lib, model
from projects.mnist.metrics import classifier, features as metrics, parzen

NUM_SAMPLES = 10_000  # the authors' protocol: 10k kernel centres,
NUM_VALIDATION = 1_000  # sigma chosen on the first 1k validation images,
# and the whole test set for the reported mean. Model selection scores the rest of the
# validation split (validation[1000:]) with the same sigma, and never reads the test split.
SELECTION_METRICS = {"val_parzen_ll": True, "val_frechet_distance": False}  # higher better?
# The EMA guard's slack: the EMA of G stays a candidate while its guard figure is worse than
# raw G's by at most this fraction. Between draws of 10,000 samples, the EMA's validation FD
# relative to raw G's on the same noise spreads by 0.5-1.8% (s.d., benchmarks/fd_noise.py),
# so 5% is about three of the widest; a blurred EMA is worse by tens of percent or more.
EMA_GUARD_TOLERANCE = 0.05



def feature_metrics_on(config: ml_collections.ConfigDict, dataset: data_lib.Dataset) -> bool:
  """Whether this run scores the classifier's feature metrics: ``classifier_metrics``, and
  the classifier cached or ``train_classifier`` allowing its training (once, ~1-2 min)."""
  ev = config.evaluation
  if not ev.get("classifier_metrics", False):
    return False
  return bool(ev.get("train_classifier", True)) or classifier.is_cached(
      dataset, cache_dir=ev.get("classifier_dir", ""))


class Evaluator:
  """Scores generators on ``dataset`` as ``config.evaluation`` asks; built once per run.

  Parzen: the paper's protocol. Feature metrics: Fréchet distance, classifier
  score, precision/recall and class coverage on the features of the cached MNIST
  classifier (trained on first use), against the test images. For model
  selection, metrics that read only the validation split: ``val_parzen_ll`` (sigma
  chosen on validation[:1000] as above, the log-likelihood of validation[1000:])
  and ``val_frechet_distance`` (against the validation images' features).
  """

  def __init__(self, config: ml_collections.ConfigDict, dataset: data_lib.Dataset):
    ev = config.evaluation
    self.dataset = dataset
    self.parzen = bool(ev.parzen)
    self.num_samples = int(ev.get("num_samples", NUM_SAMPLES))
    self.scorer = None
    self.classifier_accuracy = None
    if ev.get("classifier_metrics", False) and not feature_metrics_on(config, dataset):
      if jax.process_index() == 0:
        print("Feature metrics (FD, precision/recall, digits) skipped: the MNIST classifier is "
              "not cached and evaluation.train_classifier=False; Parzen only. Any run with "
              "train_classifier=True (the default) trains and caches it once.", flush=True)
    elif ev.get("classifier_metrics", False):
      clf = classifier.load_or_train(dataset, cache_dir=ev.get("classifier_dir", ""),
                                     verbose=jax.process_index() == 0)
      self.classifier_accuracy = clf.test_accuracy
      k = int(ev.get("nearest_k", 5))

      def reference():
        feats = clf.features_and_probs(dataset.test / 255.0)[0]
        return {"features": feats, "radii": metrics.knn_radii(feats, k)}

      ref = classifier.cached(clf, f"test_k{k}", dataset.test, reference)
      self.scorer = metrics.FeatureScorer(clf.features_and_probs, k=k,
                                          ref_features=ref["features"], ref_radii=ref["radii"])
      val = classifier.cached(clf, "validation", dataset.validation, lambda: {
          "features": clf.features_and_probs(dataset.validation / 255.0)[0]})
      self.val_stats = metrics.gaussian_stats(val["features"])

  @property
  def active(self) -> bool:
    return self.parzen or self.scorer is not None

  def samples(self, gan: GAN, state: GANState, key: jax.Array, ema: bool) -> np.ndarray:
    """The ``num_samples`` generated images this evaluation scores."""
    return generate(gan, state, sample_latent(gan, key, (self.num_samples,)), ema=ema)

  def __call__(self, gan: GAN, state: GANState, key: jax.Array, *, ema: bool = False
               ) -> dict[str, Any]:
    """The metrics of ``state``'s generator (its EMA with ``ema=True``), as a flat dict
    (plus the class histogram). Raw and EMA generators see the same noise."""
    return {"step": int(state.step), **self.score(self.samples(gan, state, key, ema))}

  def score(self, samples: np.ndarray) -> dict[str, Any]:
    """The metrics of generated images [N, 784] in [0, 1]."""
    out: dict[str, Any] = {}
    if self.parzen:
      res = parzen.parzen_evaluate(samples, self.dataset.validation[:NUM_VALIDATION] / 255.0,
                                   self.dataset.test / 255.0)
      out.update(parzen_ll=res.mean, parzen_ll_stderr=res.stderr, parzen_sigma=res.sigma)
      held = parzen.parzen_log_density(samples, self.dataset.validation[NUM_VALIDATION:] / 255.0,
                                       res.sigma)
      out.update(val_parzen_ll=float(held.mean()),
                 val_parzen_ll_stderr=float(held.std() / np.sqrt(len(held))))
    if self.scorer is not None:
      features, probs = self.scorer.featurize(samples)  # once, for every feature metric
      out.update(self.scorer(samples, featurized=(features, probs)))
      out["val_frechet_distance"] = metrics.frechet_distance(metrics.gaussian_stats(features),
                                                             self.val_stats)
      out.update(self.feature_extras(features, probs))
    return out

  def feature_extras(self, features: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Further metrics of the samples' classifier features and class probabilities (none
    here; a project's evaluator adds its own)."""
    del features, probs
    return {}


def score_generators(evaluator: Evaluator, gan: GAN, state: GANState, key: jax.Array,
                     report: Any = None) -> dict[str, Any]:
  """The raw G's metrics, and its EMA's under ``ema_`` keys when the state keeps one.

  Both see the same noise. ``report(ema, metrics, seconds)``, if given, is called
  after each generator is scored.
  """
  merged: dict[str, Any] = {}
  for ema in ((False, True) if state.ema_params is not None else (False,)):
    t0 = time.time()
    got = evaluator(gan, state, key, ema=ema)
    merged.update({(EMA_PREFIX + k if ema and k != "step" else k): v for k, v in got.items()})
    if report is not None:
      report(ema, got, time.time() - t0)
  return merged


def summary(result: dict[str, Any]) -> str:
  """One line of one generator's metrics, for the console."""
  parts = []
  if "parzen_ll" in result:
    parts.append(f"Parzen log-likelihood {result['parzen_ll']:.1f} ± "
                 f"{result['parzen_ll_stderr']:.1f} nats (sigma {result['parzen_sigma']:.3f})")
  if "val_parzen_ll" in result:
    parts.append(f"validation {result['val_parzen_ll']:.1f}")
  if "frechet_distance" in result:
    parts.append(f"FD {result['frechet_distance']:.2f}, classifier score "
                 f"{result['classifier_score']:.2f}, precision {result['precision']:.3f}, "
                 f"recall {result['recall']:.3f}, {result['classes_covered']}/10 digits covered")
  if "label_accuracy" in result:
    parts.append(f"label accuracy {result['label_accuracy']:.3f}, per-digit FD "
                 f"{result['class_fd_mean']:.2f}")
  return "; ".join(parts)


def split_generators(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
  """{"raw G": metrics, "EMA of G": metrics} of a result holding ``ema_``-prefixed keys."""
  raw = {k: v for k, v in result.items() if not k.startswith(EMA_PREFIX)}
  ema = {k[len(EMA_PREFIX):]: v for k, v in result.items() if k.startswith(EMA_PREFIX)}
  return {"raw G": raw, "EMA of G": {"step": result["step"], **ema}} if ema else {"G": raw}


def format_table(workdir: str, result: dict[str, Any]) -> str:
  """A Markdown table of one evaluation: one column per generator (raw, and EMA if kept)."""
  columns = split_generators(result)
  tables = [_rows(workdir, r) for r in columns.values()]
  head = "| metric | " + " | ".join(columns) + " |"
  lines = [head, "|---|" + "---|" * len(columns)]
  for i, (name, _) in enumerate(tables[0]):
    lines.append(f"| {name} | " + " | ".join(t[i][1] for t in tables) + " |")
  return "\n".join(lines)


def _rows(workdir: str, result: dict[str, Any]) -> list[tuple[str, str]]:
  rows = [("workdir", workdir), ("step", str(result["step"]))]
  if "parzen_ll" in result:
    rows += [("Parzen log-likelihood (nats)",
              f"{result['parzen_ll']:.1f} ± {result['parzen_ll_stderr']:.1f} "
              f"(sigma {result['parzen_sigma']:.3f})")]
  if "val_parzen_ll" in result:
    rows += [("validation Parzen, validation[1000:] (selection)",
              f"{result['val_parzen_ll']:.1f} ± {result['val_parzen_ll_stderr']:.1f}")]
  if "frechet_distance" in result:
    covered = result["classes_covered"]
    rows += [("Fréchet distance (classifier features)", f"{result['frechet_distance']:.3f}"),
             ("classifier score (max 10)", f"{result['classifier_score']:.2f}"),
             (f"precision / recall (k={result['pr_k']})",
              f"{result['precision']:.3f} / {result['recall']:.3f}"),
             ("digit classes covered", f"{covered} of 10" + (
                 "  <- MODE COLLAPSE: some digits are (nearly) never generated"
                 if covered < 10 else "")),
             ("class KL to uniform (nats, 0 = balanced)", f"{result['class_kl_to_uniform']:.4f}"),
             ("class histogram (0-9)", " ".join(map(str, result["class_histogram"])))]
  if "val_frechet_distance" in result:
    rows += [("validation Fréchet distance (selection)", f"{result['val_frechet_distance']:.3f}")]
  if "label_accuracy" in result:  # a conditional generator: the digit asked for, read back
    rows += [("label accuracy (classifier reads the label asked for)",
              f"{result['label_accuracy']:.4f}"),
             ("per-digit Fréchet distance: mean / max",
              f"{result['class_fd_mean']:.3f} / {result['class_fd_max']:.3f}")]
  return rows


def _pick_checkpoint(workdir: str, which: str) -> tuple[checkpoint.Checkpointer, int | None, str]:
  """(checkpointer, step, description) of ``--checkpoint=best|latest|STEP`` in ``workdir``."""
  regular = checkpoint.Checkpointer(workdir, read_only=True)
  if which == "best":
    if os.path.isdir(os.path.join(workdir, checkpoint.BEST)):
      best = checkpoint.Checkpointer(workdir, keep=1, subdir=checkpoint.BEST, read_only=True)
      if best.latest_step() is not None:
        regular.close()
        step = best.latest_step()
        try:
          chosen = best.metadata(step).get("memory", {}).get("selected", {})
        except checkpoint.DamagedCheckpoint:
          chosen = {}  # its restore says what is wrong
        how = (f" by {chosen['metric']} = {chosen['value']:.4g}, "
               f"{'the EMA of G' if chosen['generator'] == 'ema' else 'the raw G'} ahead"
               if chosen else "")
        return best, step, f"the model selected on validation (step {step}{how})"
      best.close()
    if regular.latest_step() is not None:
      print(f"No model has been selected on validation in {workdir} (no "
            f"{checkpoint.BEST}/); scoring the newest checkpoint instead.", flush=True)
    return regular, regular.latest_step(), "the newest checkpoint"
  if which == "latest":
    return regular, regular.latest_step(), "the newest checkpoint"
  steps = regular.all_steps()
  if not which.isdigit() or int(which) not in steps:
    regular.close()
    raise UserError(f"--checkpoint={which} names no checkpoint of {workdir}: use 'best', "
                    f"'latest' or one of the steps it holds ({', '.join(map(str, steps)) or 'none'}"
                    f").")
  return regular, int(which), f"the checkpoint at step {which}"


def _retrying(fn: Callable[[], Any]) -> Any:
  """``fn()``, again (up to 5 times) when a checkpoint directory vanished while it was
  listed: the run training in the workdir removed it (retention, a newer selection)."""
  for attempt in range(5):
    try:
      return fn()
    except FileNotFoundError:
      if attempt == 4:
        raise
      time.sleep(0.2)


def _load(workdir: str, which: str, like: GANState) -> tuple[GANState | None, str]:
  """(state, description) of ``--checkpoint=which``, read without changing the workdir.

  A run may be training in the workdir, so the checkpoint is read from a private copy;
  one that its retention (or a newer selected model) removes while it is being copied is
  looked up again, up to 5 times.
  """
  for attempt in range(5):
    ckpt, step, described = _retrying(lambda: _pick_checkpoint(workdir, which))
    try:
      if step is None:
        return None, described
      with checkpoint.private_copy(ckpt, step) as copy:
        return _read(copy, step, like), described
    except (checkpoint.DamagedCheckpoint, OSError) as e:
      # A copy made while the run removed the original fails (OSError) or is incomplete.
      gone = not os.path.isdir(os.path.join(ckpt.directory, str(step)))
      if not gone or attempt == 4:
        if isinstance(e, OSError):
          raise
        raise UserError(f"{described.capitalize()} in {ckpt.directory} is damaged ({e}); "
                        f"pass --checkpoint=latest or another step.") from e
      print(f"The checkpoint at step {step} was removed while it was read (the run in "
            f"{workdir} is training); reading the newest again.", flush=True)
    finally:
      ckpt.close()
  raise AssertionError("unreachable")


def _read(ckpt: checkpoint.Checkpointer, step: int, like: GANState) -> GANState:
  """The state at ``step``; of a checkpoint of an earlier layout, its G's raw parameters."""
  layout = ckpt.layout(step)
  if layout in (None, LAYOUT_VERSION):
    return ckpt.restore(like, step)
  g_params = checkpoint.generator_params(ckpt, step)
  print(f"The checkpoint at step {step} has state layout {layout}; scoring its generator's "
        f"raw parameters.", flush=True)
  return like.replace(step=np.asarray(step, np.int32),
                      g=like.g.replace(params=jax.tree.map(np.asarray, g_params)),
                      ema_params=None)


def restore(config: ml_collections.ConfigDict, workdir: str, which: str = "best",
            builder: Any = model) -> tuple[data_lib.Dataset, GAN, GANState, str]:
  """(dataset, gan, state, description) of ``workdir``'s checkpoint ``which`` under
  ``config``, the config it was trained with; read without changing the workdir."""
  dataset = data_lib.load(config.data)
  gan = builder.make_gan([config], dataset)
  state, described = _load(workdir, which, builder.initial_state(config, dataset, gan))
  if state is None:
    raise UserError(f"There is no checkpoint in {os.path.join(workdir, 'checkpoints')}; train "
                    f"first (python launch.py --config=... --workdir={workdir}) or pass the "
                    f"--workdir of a finished run.")
  return dataset, gan, state, described


def load_run(workdir: str, which: str = "best", **data_fields: str
             ) -> tuple[ml_collections.ConfigDict, data_lib.Dataset, GAN, GANState, str]:
  """A trained MNIST run for analyses after training: its saved config (``data_fields``,
  e.g. ``manual_dir=...``, replace its data section's paths), data, spec and the model
  selected on validation (``which``: "best", "latest" or a step)."""
  ckpt = checkpoint.Checkpointer(workdir, read_only=True) if os.path.isdir(
      os.path.join(workdir, "checkpoints")) else None
  saved = checkpoint.saved_config(ckpt) if ckpt is not None else None
  if ckpt is not None:
    ckpt.close()
  if saved is None:
    raise UserError(f"{workdir!r} holds no trained run (no checkpoint with its config); pass "
                    f"the --workdir of a run of experiments/mnist.py that has checkpointed.")
  if saved.get("experiment", "mnist") != "mnist":
    raise UserError(f"{workdir!r} is a run of the {saved.get('experiment')!r} experiment; "
                    f"this analysis reads runs of experiments/mnist.py (an unconditional G).")
  config = ml_collections.ConfigDict(saved)
  for field, value in data_fields.items():
    if value:
      config.data[field] = value
  return (config,) + restore(config, workdir, which)


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str,
                        which: str = "best", *, fields: dict[str, Any], builder: Any = model,
                        evaluator_cls: type[Evaluator] | None = None,
                        write_figures: Callable[..., list[str]] | None = None) -> dict[str, Any]:
  """Evaluate one checkpoint of ``workdir``; print a table and write eval.json.

  ``which``: "best" (default: the model selected on validation during training,
  ``checkpoints/best``; the newest checkpoint when none was selected), "latest",
  or a step. With an EMA of G in the state, both generators are scored (the
  EMA's metrics under ``ema_`` keys); the test split is read here, once. Another MNIST
  project passes its ``builder`` (``make_gan``, ``initial_state``), ``evaluator_cls`` and
  ``write_figures(gan, state, dataset, root, workdir) -> paths``.
  """
  schema.check(config, 1, fields)  # evaluation runs on one device
  if not os.path.isdir(workdir):
    raise UserError(f"The workdir {workdir!r} does not exist; pass the --workdir of a run "
                    f"(python launch.py --config=... --workdir=... trains one).")

  def check_config():  # the config must be the one the workdir was trained with
    probe = checkpoint.Checkpointer(workdir, read_only=True)
    try:
      schema.check_resumable(probe, config, fields=fields, check_layout=False)
    finally:
      probe.close()

  _retrying(check_config)
  dataset, gan, state, described = restore(config, workdir, which, builder)
  root = jax.random.key(config.seed)
  evaluator = (evaluator_cls or Evaluator)(config, dataset)
  if not evaluator.active:
    raise UserError("config.evaluation turns every metric off (parzen and classifier_metrics "
                    "are both False); enable one, e.g. --config.evaluation.parzen=True.")
  print(f"Scoring {described}.", flush=True)
  result = score_generators(evaluator, gan, state, jax.random.fold_in(root, 3))
  result["checkpoint"] = described
  print(format_table(workdir, result), flush=True)
  try:
    tmp = os.path.join(workdir, "eval.json.tmp")
    with open(tmp, "w") as f:
      json.dump(result, f, indent=2)
    os.replace(tmp, os.path.join(workdir, "eval.json"))
    if write_figures is None:
      from projects.mnist import figures  # pylint: disable=import-outside-toplevel
      write_figures = figures.write_paper_figures
    written = write_figures(gan, state, dataset, root, workdir)
  except OSError as e:
    raise UserError(f"The table above could not be saved: {e.filename or workdir} could not be "
                    f"written ({e.strerror}), so eval.json and the figures were not written. "
                    f"Make {workdir} writable, or copy it to a writable place and run "
                    f"--mode=eval there.") from e
  print(f"Figures: {', '.join(written)}", flush=True)
  return result
