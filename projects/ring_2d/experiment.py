"""Mode coverage on a 2-D mixture of Gaussians on a circle (experiments/ring_2d.py).

p_data: ``num_modes`` equally weighted isotropic Gaussians of standard
deviation ``std`` centred on a circle of radius ``radius``. A generated point
is *high quality* when it lies within 3 std of its nearest mode; a mode is
*covered* when at least ``min_share`` of all samples are high-quality points
of that mode (4% by default: VEEGAN's 100 of 2,500 samples, as a share).

The experiment config trains the same GAN twice from the same initial
parameters and data (a two-replica sweep, one vmapped program), once with the
minimax G loss log(1 - D(G(z))) and once with the non-saturating -log D(G(z)),
and measures G's gradient norm over the first iterations: the paper's argument
that the minimax loss saturates early, when D rejects samples with high
confidence. ``d_warmup_steps`` D updates against the initial G come first, so
that the run starts in that regime (D ahead of a poor G); with none, D and G
start level and the two losses' gradients start alike.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import kernels
from gan_jax.errors import UserError
from gan_jax.loop import SamplerSource, train_discriminator
from gan_jax.run import build, experiment, schema, sweep
from gan_jax.run.experiment import Context, Data
from gan_jax.run.schema import Field
from gan_jax.state import GAN, GANState, init_state, sample_latent
from projects.ring_2d import plots


def ring_means(num_modes: int = 8, radius: float = 2.0) -> np.ndarray:
  """[num_modes, 2] centres, evenly spaced on the circle, the first at angle 0."""
  angles = 2.0 * np.pi * np.arange(num_modes) / num_modes
  return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def ring_sampler(num_modes: int = 8, radius: float = 2.0, std: float = 0.02):
  """``sample(key, n) -> [n, 2]`` from the mixture (for ``loop.SamplerSource``)."""
  means = jnp.asarray(ring_means(num_modes, radius), jnp.float32)

  def sample(key, n):
    k_mode, k_noise = jax.random.split(key)
    mode = jax.random.randint(k_mode, (n,), 0, num_modes)
    return means[mode] + std * jax.random.normal(k_noise, (n, 2))

  return sample


def mode_statistics(samples: np.ndarray, means: np.ndarray, std: float, *,
                    min_share: float = 0.04) -> dict:
  """Modes covered, the high-quality share and the per-mode counts of ``samples`` [n, 2]."""
  samples = np.asarray(samples, np.float64)
  dist = np.linalg.norm(samples[:, None, :] - means[None, :, :], axis=-1)  # [n, modes]
  nearest = np.argmin(dist, axis=1)
  good = dist[np.arange(len(samples)), nearest] <= 3.0 * std
  counts = np.bincount(nearest[good], minlength=len(means))
  return {"modes_covered": int(np.sum(counts >= min_share * len(samples))),
          "num_modes": int(len(means)),
          "high_quality_share": float(good.mean()),
          "mode_counts": [int(c) for c in counts]}


def make_gan(configs: Sequence[Any]) -> GAN:
  """One spec for ring configs that differ only in ``sweep.VMAPPABLE`` fields."""
  return build.make_group_gan(list(configs), data_dim=2, batches_per_epoch=1)


_COUNT = Field("int", lambda v: v >= 0, "an integer >= 0")


class Ring2D(experiment.Experiment):
  """experiments/ring_2d.py: mode coverage and the minimax loss's early saturation."""

  fields = {
      "data": {"num_modes": schema.positive(), "radius": schema.positive("float"),
               "std": schema.positive("float")},
      "model": {"latent_dim": schema.positive(),
                "latent_dist": schema.choice(("normal", "uniform"), default="normal"),
                "dtype": schema.choice(kernels.DTYPE_CHOICES, default="float32"),
                **schema.MLP_PLAYERS},
      "early_steps": schema.positive(),  # G's gradient norm is averaged over these
      "num_eval_samples": schema.positive(),
      "min_share": schema.unit(),
      "d_warmup_steps": _COUNT,
  }
  resumable = ("num_eval_samples", "min_share")

  @classmethod
  def check(cls, config, num_devices) -> None:
    super().check(config, num_devices)
    if not config.gan.get("grad_norms", True) or config.gan.get("grad_norms_every", 1) != 1:
      raise UserError(f"config.gan.grad_norms is {config.gan.get('grad_norms', True)} and "
                      f"grad_norms_every {config.gan.get('grad_norms_every', 1)}, but this "
                      f"experiment measures G's gradient norm at every one of the first "
                      f"config.early_steps steps (the minimax loss's saturation); set "
                      f"grad_norms=True and grad_norms_every=1.")

  def load_data(self) -> Data:
    d = self.config.data
    return Data(source=SamplerSource(ring_sampler(d.num_modes, d.radius, d.std)), dim=2)

  def make_gan(self, data: Data) -> GAN:
    return make_gan(self.configs)

  def initial_state(self, ctx: Context) -> GANState:
    return init_state(ctx.gan, jax.random.fold_in(ctx.root, 0), jnp.zeros((1, 2)),
                      hparams=build.replica_hparams(ctx.config))

  def start(self, ctx: Context) -> GANState:
    c, state = ctx.config, ctx.state
    assert state is not None
    if c.d_warmup_steps:  # D first learns to reject the initial G's samples
      d = c.data
      state, _ = train_discriminator(ctx.gan, state, ring_sampler(d.num_modes, d.radius, d.std),
                                     jax.random.fold_in(ctx.root, 2),
                                     num_steps=c.d_warmup_steps, batch_size=c.batch_size,
                                     kernels=ctx.kernels)
    ctx.memory.update(early_g_grad_norm=[], early_d_fake=[])
    return state

  def observe(self, ctx: Context, metrics: dict[str, np.ndarray]) -> None:
    n = len(metrics["g_grad_norm"])
    keep = max(0, min(n, ctx.config.early_steps - (ctx.step - n)))
    for key in ("early_g_grad_norm", "early_d_fake"):
      ctx.memory[key] += [float(v) for v in metrics[key[len("early_"):]][:keep]]

  def samples(self, ctx: Context) -> np.ndarray:
    z = sample_latent(ctx.gan, jax.random.fold_in(ctx.root, 3), (ctx.config.num_eval_samples,))
    return ctx.generate(z)

  @staticmethod
  def statistics(config: Any, samples: np.ndarray) -> dict:
    d = config.data
    return mode_statistics(samples, ring_means(d.num_modes, d.radius), d.std,
                           min_share=config.min_share)

  def evaluate(self, ctx: Context) -> dict:
    return self.statistics(ctx.config, self.samples(ctx))

  def plot(self, ctx: Context) -> None:
    plots.curves({ctx.out.label.strip("[] ") or "run": (ctx.rows, ctx.memory["early_g_grad_norm"])},
                 ctx.config.early_steps, ctx.out.path("curves.png"))

  def finish(self, ctx: Context) -> None:
    c, out, rows = ctx.config, ctx.out, ctx.rows
    samples = self.samples(ctx)
    res = {**self.statistics(c, samples), **_early(ctx.memory),
           "best_modes_covered": max(r["modes_covered"] for r in rows if "modes_covered" in r),
           "final_d_real": rows[-1]["d_real"], "final_d_fake": rows[-1]["d_fake"],
           "wall_seconds": rows[-1]["wall_time"]}
    experiment.write_json(out.path("results.json"), res)
    np.save(out.path("final_samples.npy"), samples)
    d = c.data
    name = out.label.strip("[] ") or c.gan.g_loss
    plots.samples(self.real_samples(c), {name: samples}, ring_means(d.num_modes, d.radius),
                  d.std, {name: res}, out.path("samples.png"))
    print(f"{out.label}{res['modes_covered']}/{res['num_modes']} modes covered, "
          f"{100 * res['high_quality_share']:.1f}% of samples within 3 std of a mode; G grad "
          f"norm at step 1 {res['first_g_grad_norm']:.3g}, mean over the first "
          f"{c.early_steps} steps {res['early_g_grad_norm']:.3g} (mean D(G(z)) "
          f"{res['early_d_fake']:.3f})", flush=True)

  @staticmethod
  def real_samples(config) -> np.ndarray:
    d = config.data
    return np.asarray(ring_sampler(d.num_modes, d.radius, d.std)(
        jax.random.key(config.seed + 1), config.num_eval_samples))

  @classmethod
  def summarize(cls, replicas, workdir) -> None:
    """sweep.csv, results.json, metrics.jsonl, samples.png and curves.png over the replicas,
    and the non-saturating / minimax gradient ratio over pairs equal but for the G loss."""
    results, finals, curves, rows, summary = {}, {}, {}, [], []
    for r in replicas:
      sub = os.path.join(workdir, r.name)
      with open(os.path.join(sub, "results.json")) as f:
        res = json.load(f)
      own = experiment.read_rows(os.path.join(sub, "metrics.jsonl"))
      results[r.name], finals[r.name] = res, np.load(os.path.join(sub, "final_samples.npy"))
      curves[r.name] = (own, res["early_g_grad_norms"])
      rows += [{"replica": r.name, **row} for row in own]
      summary.append({"replica": r.name, **r.values,
                      **{k: v for k, v in res.items() if k != "early_g_grad_norms"}})
    ratios = _loss_ratios(replicas, results)
    if ratios:
      print(f"non-saturating / minimax G gradient norm (median over {ratios['loss_pairs']} "
            f"pair(s)): {ratios['first_g_grad_norm_ratio_ns_over_minimax']:.0f}x at step 1, "
            f"{ratios['early_g_grad_norm_ratio_ns_over_minimax']:.1f}x over the first "
            f"{replicas[0].config.early_steps} steps", flush=True)
    c = replicas[0].config
    experiment.write_json(os.path.join(workdir, "results.json"), {
        **results, **ratios, "train_steps": c.num_train_steps, "early_steps": c.early_steps,
        "num_eval_samples": c.num_eval_samples, "min_share": c.min_share,
        "replicas": len(replicas)})
    with open(os.path.join(workdir, "metrics.jsonl.tmp"), "w") as f:
      f.writelines(json.dumps(row) + "\n" for row in rows)
    os.replace(os.path.join(workdir, "metrics.jsonl.tmp"), os.path.join(workdir, "metrics.jsonl"))
    sweep.write_summary(os.path.join(workdir, "sweep.csv"), summary)
    d = c.data
    plots.samples(cls.real_samples(c), finals, ring_means(d.num_modes, d.radius), d.std,
                  results, os.path.join(workdir, "samples.png"))
    plots.curves(curves, c.early_steps, os.path.join(workdir, "curves.png"))


def _early(memory: dict) -> dict:
  g, fake = memory["early_g_grad_norm"], memory["early_d_fake"]
  return {"first_g_grad_norm": g[0], "early_g_grad_norm": float(np.mean(g)),
          "early_d_fake": float(np.mean(fake)), "early_g_grad_norms": g}


def _loss_ratios(replicas, results) -> dict:
  """Non-saturating over minimax G gradient norms, over replicas equal but for the loss."""
  firsts, earlies = [], []
  for r in replicas:
    if r.config.gan.g_loss != "minimax":
      continue
    for q in replicas:
      same = {k: v for k, v in q.values.items() if k != "gan.g_loss"} == \
             {k: v for k, v in r.values.items() if k != "gan.g_loss"}
      if q.config.gan.g_loss == "non_saturating" and same:
        mm, ns = results[r.name], results[q.name]
        firsts.append(ns["first_g_grad_norm"] / max(mm["first_g_grad_norm"], 1e-30))
        earlies.append(ns["early_g_grad_norm"] / max(mm["early_g_grad_norm"], 1e-30))
  if not firsts:
    return {}
  return {"first_g_grad_norm_ratio_ns_over_minimax": float(np.median(firsts)),
          "early_g_grad_norm_ratio_ns_over_minimax": float(np.median(earlies)),
          "loss_pairs": len(firsts)}
