"""Mode coverage on a 2-D mixture of Gaussians on a circle (experiments/ring_2d.py).

p_data: ``num_modes`` equally weighted isotropic Gaussians of standard
deviation ``std`` centred on a circle of radius ``radius``. A generated point
is *high quality* when it lies within 3 std of its nearest mode; a mode is
*covered* when at least ``min_share`` of all samples are high-quality points
of that mode (4% by default: VEEGAN's 100 of 2,500 samples, as a share).

The run trains the same GAN twice from the same initial parameters and data,
once with the minimax G loss log(1 - D(G(z))) and once with the
non-saturating -log D(G(z)), and measures G's gradient norm over the first
iterations: the paper's argument that the minimax loss saturates early, when
D rejects samples with high confidence. ``d_warmup_steps`` D updates against
the initial G come first, so that the run starts in that regime (D ahead of
a poor G); with none, D and G start level and the two losses' gradients start
alike.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import build, loop as loop_lib, optim, steps, sweep, toy, visualize
from gan_jax.state import GAN, GANState, init_state, sample_latent


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


def make_gan(config, g_loss=None, d_loss=None) -> GAN:
  """The GAN spec of a ring_2d config (``g_loss``/``d_loss``: a sweep group's choices)."""
  m = config.model
  g_opt = config.get("g_optimizer") or config.optimizer
  dtype = m.get("dtype", "float32")
  return GAN(
      generator=build.make_generator(m.generator, 2, dtype),
      discriminator=build.make_discriminator(m.discriminator, dtype),
      g_optimizer=optim.make_optimizer(g_opt, steps_per_epoch=1),
      d_optimizer=optim.make_optimizer(config.optimizer, steps_per_epoch=1),
      latent_dim=m.latent_dim, latent_dist="normal",
      g_loss=config.gan.g_loss if g_loss is None else g_loss,
      d_loss=config.gan.get("d_loss", "bce") if d_loss is None else d_loss,
      real_label=config.gan.real_label, ema_decay=config.gan.get("ema_decay", 0.0),
      k=config.gan.k, update_rule=config.gan.update_rule)


def make_group_gan(configs) -> GAN:
  """One spec for ring configs that differ only in ``sweep.VMAPPABLE`` fields."""
  return make_gan(configs[0], g_loss=build.loss_choices([c.gan.g_loss for c in configs]),
                  d_loss=build.loss_choices([c.gan.get("d_loss", "bce") for c in configs]))


def train_group(configs: Sequence[Any]) -> tuple[list[tuple[np.ndarray, dict, list[dict]]],
                                                  list[GANState]]:
  """Train ring GANs whose configs differ only in ``sweep.VMAPPABLE`` fields.

  One config trains on its own (a plain ``TrainLoop``); several train as one
  program, vmapped over their states. Returns, per config, (final samples of
  ``num_eval_samples`` fixed noise vectors, per-step metrics, a row of
  statistics every ``log_every`` steps), and the final states.
  """
  base = configs[0]
  data = base.data
  sample_real = ring_sampler(data.num_modes, data.radius, data.std)
  means = ring_means(data.num_modes, data.radius)
  roots = [jax.random.key(c.seed) for c in configs]
  gan = make_group_gan(configs)
  states = [init_state(gan, jax.random.fold_in(r, 0), jnp.zeros((1, 2)),
                       hparams=build.replica_hparams(c))
            for c, r in zip(configs, roots, strict=True)]
  warm_keys = [jax.random.fold_in(r, 2) for r in roots]
  train_keys = [jax.random.fold_in(r, 1) for r in roots]
  eval_z = jnp.stack([sample_latent(gan, jax.random.fold_in(r, 3), (base.num_eval_samples,))
                      for r in roots])
  chunk = math.gcd(base.log_every, base.num_train_steps)
  source = loop_lib.SamplerSource(sample_real)
  warm_kw = dict(num_steps=base.d_warmup_steps, batch_size=base.batch_size)

  if len(configs) == 1:
    state = states[0]
    if base.d_warmup_steps:  # D first learns to reject the initial G's samples
      state, _ = toy.train_discriminator(gan, state, sample_real, warm_keys[0], **warm_kw)
    tl = loop_lib.TrainLoop(gan, source, global_batch=base.batch_size, steps_per_call=chunk,
                            parallel="none")
    dstate = tl.put_state(state)

    def call(dstate):
      dstate, metrics = tl(dstate, None, train_keys[0])
      return dstate, jax.tree.map(lambda m: m[None], metrics)
    stacked = lambda dstate: jax.tree.map(lambda x: x[None], dstate)
  else:
    state = sweep.stack(states)
    if base.d_warmup_steps:
      warm = jax.jit(jax.vmap(lambda s, k: toy.discriminator_steps(
          gan, s, sample_real, k, **warm_kw)[0]))
      state = warm(state, jnp.stack(warm_keys))
    tl = loop_lib.TrainLoop(gan, source, global_batch=base.batch_size, steps_per_call=chunk,
                            parallel="none", vmapped=True)
    dstate = tl.put_state(state)
    keys = jnp.stack(train_keys)

    def call(dstate):
      return tl(dstate, None, keys)
    stacked = lambda dstate: dstate

  gen = jax.jit(jax.vmap(lambda s, z: steps.generate(gan, s, z)))
  per_step, rows = [], [[] for _ in configs]
  for step in range(chunk, base.num_train_steps + 1, chunk):
    dstate, metrics = call(dstate)
    metrics = jax.device_get(metrics)  # [R, chunk] each
    per_step.append(metrics)
    samples = np.asarray(gen(stacked(dstate), eval_z))
    for i, c in enumerate(configs):
      stats = mode_statistics(samples[i], means, data.std, min_share=c.min_share)
      rows[i].append({"step": step, "g_loss_kind": c.gan.g_loss, "seed": c.seed,
                      **{k: float(np.mean(v[i])) for k, v in metrics.items()},
                      **{k: v for k, v in stats.items() if k != "mode_counts"}})
  out = []
  for i in range(len(configs)):
    m = {k: np.concatenate([p[k][i] for p in per_step]) for k in per_step[0]}
    out.append((samples[i], m, rows[i]))
  finals = [dstate] if len(configs) == 1 else [sweep.unstack(dstate, i)
                                               for i in range(len(configs))]
  return out, finals


def _replica_results(config, samples, metrics, rows, wall_seconds) -> dict:
  data = config.data
  stats = mode_statistics(samples, ring_means(data.num_modes, data.radius), data.std,
                          min_share=config.min_share)
  early = slice(0, config.early_steps)
  return {
      **stats,
      "first_g_grad_norm": float(metrics["g_grad_norm"][0]),
      "early_g_grad_norm": float(np.mean(metrics["g_grad_norm"][early])),
      "early_d_fake": float(np.mean(metrics["d_fake"][early])),
      "best_modes_covered": max(r["modes_covered"] for r in rows),
      "final_d_real": float(np.mean(metrics["d_real"][-config.log_every:])),
      "final_d_fake": float(np.mean(metrics["d_fake"][-config.log_every:])),
      "wall_seconds": wall_seconds,
  }


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


def _write_json(path: str, obj: Any) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def run_ring_2d(config, workdir: str) -> dict:
  """Every replica of ``config.sweep`` on the ring (by default: the two G losses).

  Writes, per replica, ``<workdir>/<replica>/`` with metrics.jsonl, results.json
  and samples.png; and for the whole sweep results.json, sweep.csv (one row per
  replica), metrics.jsonl, samples.png and curves.png. Returns the results,
  keyed by replica name.
  """
  os.makedirs(workdir, exist_ok=True)
  data = config.data
  means = ring_means(data.num_modes, data.radius)
  replicas = sweep.expand(config)
  groups = sweep.groups(replicas)
  results, all_rows, finals, per_step, summary = {}, [], {}, {}, []
  real = np.asarray(ring_sampler(data.num_modes, data.radius, data.std)(
      jax.random.key(config.seed + 1), config.num_eval_samples))
  t0 = time.time()
  print(f"{len(replicas)} run(s) in {len(groups)} program(s): "
        f"{', '.join(str(len(g)) for g in groups)} replica(s) each", flush=True)
  for gi, group in enumerate(groups):
    t = time.time()
    outs, _ = train_group([r.config for r in group])
    wall = time.time() - t
    for r, (samples, metrics, rows) in zip(group, outs, strict=True):
      name = r.name or r.config.gan.g_loss
      res = _replica_results(r.config, samples, metrics, rows, wall / len(group))
      results[name], finals[name], per_step[name] = res, samples, metrics
      for row in rows:
        row["replica"] = name
      all_rows += rows
      summary.append({"replica": name, **r.values, "group": gi, "group_size": len(group),
                      **{k: v for k, v in res.items() if k != "mode_counts"},
                      "mode_counts": res["mode_counts"]})
      sub = os.path.join(workdir, name)
      os.makedirs(sub, exist_ok=True)
      with open(os.path.join(sub, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
      _write_json(os.path.join(sub, "results.json"), {"values": r.values, **res})
      visualize.plot_ring(real, {name: samples}, means, data.std, {name: res},
                          os.path.join(sub, "samples.png"))
      print(f"{name:>34}: {res['modes_covered']}/{res['num_modes']} modes covered, "
            f"{100 * res['high_quality_share']:.1f}% of samples within 3 std of a mode; "
            f"G grad norm at step 1 {res['first_g_grad_norm']:.3g}, mean over the first "
            f"{config.early_steps} steps {res['early_g_grad_norm']:.3g} "
            f"(mean D(G(z)) {res['early_d_fake']:.3f})", flush=True)
    print(f"  program {gi + 1}/{len(groups)}: {len(group)} replica(s), "
          f"{config.num_train_steps} iterations in {wall:.0f} s", flush=True)
  ratios = _loss_ratios(replicas, results)
  if ratios:
    print(f"non-saturating / minimax G gradient norm (median over {ratios['loss_pairs']} "
          f"pair(s)): {ratios['first_g_grad_norm_ratio_ns_over_minimax']:.0f}x at step 1, "
          f"{ratios['early_g_grad_norm_ratio_ns_over_minimax']:.1f}x over the first "
          f"{config.early_steps} steps", flush=True)
  results.update(ratios)
  results.update(train_steps=config.num_train_steps, early_steps=config.early_steps,
                 num_eval_samples=config.num_eval_samples, min_share=config.min_share,
                 replicas=len(replicas), programs=len(groups), wall_seconds=time.time() - t0)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in all_rows)
  _write_json(os.path.join(workdir, "results.json"), results)
  sweep.write_summary(os.path.join(workdir, "sweep.csv"), summary)
  visualize.plot_ring(real, finals, means, data.std, results,
                      os.path.join(workdir, "samples.png"))
  visualize.plot_ring_curves(all_rows, per_step, config.early_steps,
                             os.path.join(workdir, "curves.png"))
  print(f"{os.path.join(workdir, 'sweep.csv')}, {os.path.join(workdir, 'samples.png')}, "
        f"{os.path.join(workdir, 'curves.png')}", flush=True)
  return results
