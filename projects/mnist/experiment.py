"""The MNIST experiment (configs/mnist*.py): the paper's model on the paper's data.

Data: TFDS MNIST's training split, on device as bytes, shuffled per epoch.
Evaluation: sample grids of fixed noise (``samples/step_N.png``: the EMA of G
when the run keeps one, ``samples/raw_step_N.png`` the raw G), and the metrics
``config.evaluation`` asks for (Parzen, Fréchet distance, precision/recall,
class coverage) of the raw G and its EMA on the same noise.
"""

from __future__ import annotations

import os
from typing import Any

import jax

from gan_jax import kernels, state as state_lib
from gan_jax.errors import UserError
from gan_jax.loop import ArraySource
from gan_jax.run import pictures, schema
from gan_jax.run.experiment import Context, Data, Experiment
from gan_jax.run.selection import Selection
from gan_jax.state import GAN, GANState, sample_latent
from projects.mnist import data as data_lib, evaluate, model, plots

SAMPLE_ROWS = 10  # sample grids are SAMPLE_ROWS x SAMPLE_ROWS

# The MNIST experiment's own config sections, beside schema.COMMON.
FIELDS: dict[str, Any] = {
    "data": {
        "name": schema.choice(data_lib.DATASETS),
        "manual_dir": schema.Field("str", default=""),
        "data_dir": schema.Field("str", default=""),
    },
    "model": {
        # mlp_maxout: the paper's players (generator/discriminator sections); conv: the
        # DCGAN-style pair (gan_jax.ConvGenerator / ConvDiscriminator, conv_features wide).
        "name": schema.choice(model.MODELS, default="mlp_maxout"),
        "conv_features": schema.positive(default=64),
        "latent_dim": schema.positive(),
        "latent_dist": schema.choice(state_lib.LATENT_DISTS, default="uniform"),
        "dtype": schema.choice(kernels.DTYPE_CHOICES, default="float32"),
        **schema.MLP_PLAYERS,
    },
    "evaluation": {
        "parzen": schema.Field("bool"),
        "classifier_metrics": schema.Field("bool"),
        # False: without a cached classifier, score Parzen only instead of training it.
        "train_classifier": schema.Field("bool", default=True),
        "classifier_dir": schema.Field("str", default=""),
        "num_samples": schema.positive(default=10_000),
        "nearest_k": schema.positive(default=5),
        # The validation metric that picks checkpoints/best: "auto" = val_parzen_ll when
        # parzen is on, else val_frechet_distance when classifier_metrics is on.
        "select_on": schema.choice(("auto", "val_parzen_ll", "val_frechet_distance", "none"),
                             default="auto"),
        # The EMA of G is a candidate only at evaluations where it is no worse than raw G on
        # this validation metric ("auto" = val_frechet_distance when classifier_metrics is on).
        "ema_guard": schema.choice(("auto", "val_parzen_ll", "val_frechet_distance", "none"),
                             default="auto"),
        # ... within this fraction of raw G's figure (the metric's noise between draws).
        "ema_guard_tolerance": schema.Field("float", lambda v: 0.0 <= v < 1.0,
                                            "a fraction in [0, 1)",
                                            default=evaluate.EMA_GUARD_TOLERANCE),
    },
}


class MNIST(Experiment):
  fields = FIELDS
  resumable = ("evaluation.", "data.manual_dir", "data.data_dir")
  feature_metrics: bool | None = None  # whether evaluations score them; known after load_data

  @classmethod
  def evaluate_checkpoint(cls, config, workdir: str, which: str) -> dict[str, Any]:
    return evaluate.evaluate_checkpoint(config, workdir, which, fields=cls.schema())

  def load_data(self) -> Data:
    self.dataset = data_lib.load(self.config.data)
    n = len(self.dataset.train)
    self._evaluator = None
    self.feature_metrics = evaluate.feature_metrics_on(self.config, self.dataset)
    if jax.process_index() == 0:  # the classifier checked (or trained) before any training
      self.evaluator  # noqa: B018  # pylint: disable=pointless-statement
    return Data(source=ArraySource(n), dim=self.dataset.dim, array=self.dataset.train,
                batches_per_epoch=n // self.config.batch_size)

  def make_gan(self, data: Data) -> GAN:
    return model.make_gan(self.configs, self.dataset)

  def initial_state(self, ctx: Context) -> GANState:
    return model.initial_state(ctx.config, self.dataset, ctx.gan)

  @property
  def evaluator(self) -> evaluate.Evaluator:
    if self._evaluator is None:  # built on first use, by the process that evaluates
      self._evaluator = evaluate.Evaluator(self.config, self.dataset)
    return self._evaluator

  def grid_inputs(self, ctx: Context) -> tuple[jax.Array, Any]:
    """The fixed noise (and condition) of the sample grids: the same at every evaluation."""
    return sample_latent(ctx.gan, jax.random.fold_in(ctx.root, 2), (SAMPLE_ROWS**2,)), None

  def evaluate(self, ctx: Context) -> dict[str, Any]:
    state, step, out = ctx.state, ctx.step, ctx.out
    assert state is not None
    fixed_z, cond = self.grid_inputs(ctx)
    # samples/step_N.png shows the generator a run is judged by (the EMA when there is one);
    # samples/raw_step_N.png the raw G beside it.
    os.makedirs(out.path("samples"), exist_ok=True)
    kinds = ((True, ""), (False, "raw_")) if state.ema_params is not None else ((False, ""),)
    for ema, prefix in kinds:
      images = ctx.generate(fixed_z, ema=ema, cond=cond)
      grid = pictures.image_grid(images, self.dataset.image_shape, rows=SAMPLE_ROWS,
                                  cols=SAMPLE_ROWS)
      pictures.save_png(out.path("samples", f"{prefix}step_{step:07d}.png"), grid)
      out.image(f"{prefix}samples", grid, step)
    if not self.evaluator.active:
      return {}

    def report(ema: bool, got: dict, seconds: float) -> None:
      which = " (EMA of G)" if ema else ""
      print(f"{out.label}eval at step {step}{which}: {evaluate.summary(got)} "
            f"({seconds:.0f} s)", flush=True)
      if got.get("classes_covered", 10) < 10:
        print(f"{out.label}warning: mode collapse at step {step}{which}: only "
              f"{got['classes_covered']} of 10 digit classes get at least 1% of the samples "
              f"(histogram {got['class_histogram']}).", flush=True)
    return evaluate.score_generators(self.evaluator, ctx.gan, state,
                                     jax.random.fold_in(ctx.root, 3), report)

  @classmethod
  def check(cls, config, num_devices) -> None:
    super().check(config, num_devices)
    ev = config.evaluation
    needs = {"val_parzen_ll": "parzen", "val_frechet_distance": "classifier_metrics"}
    for field in ("select_on", "ema_guard"):
      wanted = ev.get(field, "auto")
      if wanted in needs and not ev[needs[wanted]]:
        raise UserError(f"config.evaluation.{field} is {wanted!r}, which "
                        f"config.evaluation.{needs[wanted]}=False turns off; turn it on, or "
                        f"choose another metric ('auto', 'none').")
    need = max(2, ev.get("nearest_k", 5) + 1) if ev.classifier_metrics else 1
    if ev.get("num_samples", evaluate.NUM_SAMPLES) < need:
      raise UserError(f"config.evaluation.num_samples is {ev.num_samples}; the classifier "
                      f"metrics need at least {need} samples (the Fréchet distance 2, precision "
                      f"and recall nearest_k + 1 = {ev.get('nearest_k', 5) + 1}). Raise it (the "
                      f"authors' protocol scores 10000) or set "
                      f"--config.evaluation.classifier_metrics=False.")

  def selection(self) -> Selection | None:
    ev = self.config.evaluation
    features = (bool(ev.classifier_metrics) if self.feature_metrics is None else
                self.feature_metrics)
    key = ev.get("select_on", "auto")
    if key == "auto":
      key = ("val_parzen_ll" if ev.parzen else
             "val_frechet_distance" if features else "none")
    if key == "none":
      return None
    guard = ev.get("ema_guard", "auto")
    if guard == "auto":
      guard = "val_frechet_distance" if features else "none"
    return Selection(key, evaluate.SELECTION_METRICS[key],
                     None if guard == "none" else (guard, evaluate.SELECTION_METRICS[guard]),
                     float(ev.get("ema_guard_tolerance", evaluate.EMA_GUARD_TOLERANCE)))

  def plot(self, ctx: Context) -> None:
    pictures.plot_curves([r for r in ctx.rows if "d_loss" in r], ctx.out.path("curves.png"))
    plots.eval_curves(ctx.rows, ctx.out.path("eval.png"))
