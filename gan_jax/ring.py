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

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import build, loop as loop_lib, optim, toy, visualize
from gan_jax.state import GAN, init_state, sample_latent

G_LOSSES = ("minimax", "non_saturating")


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


def make_gan(config, g_loss: str) -> GAN:
  """The GAN spec of a ring_2d config with the given G loss."""
  m = config.model
  return GAN(
      generator=build.make_generator(m.generator, 2, "float32"),
      discriminator=build.make_discriminator(m.discriminator, "float32"),
      g_optimizer=optim.make_optimizer(config.optimizer, steps_per_epoch=1),
      d_optimizer=optim.make_optimizer(config.optimizer, steps_per_epoch=1),
      latent_dim=m.latent_dim, latent_dist="normal", g_loss=g_loss,
      k=config.gan.k, update_rule=config.gan.update_rule)


def train_one(config, g_loss: str) -> tuple[np.ndarray, dict[str, np.ndarray], list[dict]]:
  """Train with ``g_loss``; returns final samples, per-step metrics and snapshot rows."""
  data = config.data
  sample_real = ring_sampler(data.num_modes, data.radius, data.std)
  means = ring_means(data.num_modes, data.radius)
  gan = make_gan(config, g_loss)
  root = jax.random.key(config.seed)
  state = init_state(gan, jax.random.fold_in(root, 0), jnp.zeros((1, 2)))
  if config.d_warmup_steps:  # D first learns to reject the initial G's samples
    state, _ = toy.train_discriminator(gan, state, sample_real, jax.random.fold_in(root, 2),
                                       num_steps=config.d_warmup_steps,
                                       batch_size=config.batch_size)
  chunk = math.gcd(config.log_every, config.num_train_steps)
  tl = loop_lib.TrainLoop(gan, loop_lib.SamplerSource(sample_real),
                          global_batch=config.batch_size, steps_per_call=chunk, parallel="none")
  dstate = tl.put_state(state)
  eval_z = sample_latent(gan, jax.random.fold_in(root, 3), (config.num_eval_samples,))
  gen = jax.jit(lambda p, z: gan.generator.apply({"params": p}, z))
  per_step, rows = [], []
  for step in range(chunk, config.num_train_steps + 1, chunk):
    dstate, metrics = tl(dstate, None, jax.random.fold_in(root, 1))
    per_step.append(jax.device_get(metrics))
    samples = np.asarray(gen(tl.get_state(dstate).g_params, eval_z))
    stats = mode_statistics(samples, means, data.std, min_share=config.min_share)
    rows.append({"step": step, "g_loss_kind": g_loss,
                 **{k: float(np.mean(v)) for k, v in per_step[-1].items()},
                 **{k: v for k, v in stats.items() if k != "mode_counts"}})
  metrics = {k: np.concatenate([m[k] for m in per_step]) for k in per_step[0]}
  return samples, metrics, rows


def run_ring_2d(config, workdir: str) -> dict:
  """Both G losses on the ring; writes results.json, metrics.jsonl, samples.png, curves.png."""
  os.makedirs(workdir, exist_ok=True)
  data = config.data
  means = ring_means(data.num_modes, data.radius)
  results, all_rows, finals, per_step = {}, [], {}, {}
  t0 = time.time()
  for g_loss in config.g_losses:
    t = time.time()
    samples, metrics, rows = train_one(config, g_loss)
    early = slice(0, config.early_steps)
    stats = mode_statistics(samples, means, data.std, min_share=config.min_share)
    results[g_loss] = {
        **stats,
        "first_g_grad_norm": float(metrics["g_grad_norm"][0]),
        "early_g_grad_norm": float(np.mean(metrics["g_grad_norm"][early])),
        "early_d_fake": float(np.mean(metrics["d_fake"][early])),
        "best_modes_covered": max(r["modes_covered"] for r in rows),
        "final_d_real": float(np.mean(metrics["d_real"][-config.log_every:])),
        "final_d_fake": float(np.mean(metrics["d_fake"][-config.log_every:])),
        "wall_seconds": time.time() - t,
    }
    finals[g_loss], per_step[g_loss] = samples, metrics
    all_rows += rows
    r = results[g_loss]
    print(f"{g_loss:>15}: {r['modes_covered']}/{r['num_modes']} modes covered, "
          f"{100 * r['high_quality_share']:.1f}% of samples within 3 std of a mode; "
          f"G grad norm at step 1 {r['first_g_grad_norm']:.3g}, mean over the first "
          f"{config.early_steps} steps {r['early_g_grad_norm']:.3g} "
          f"(mean D(G(z)) {r['early_d_fake']:.3f}) ({r['wall_seconds']:.0f} s)", flush=True)
  if len(results) == 2:
    ratio = (results["non_saturating"]["early_g_grad_norm"] /
             max(results["minimax"]["early_g_grad_norm"], 1e-30))
    first = (results["non_saturating"]["first_g_grad_norm"] /
             max(results["minimax"]["first_g_grad_norm"], 1e-30))
    results["early_g_grad_norm_ratio_ns_over_minimax"] = ratio
    results["first_g_grad_norm_ratio_ns_over_minimax"] = first
    print(f"non-saturating / minimax G gradient norm: {first:.0f}x at step 1, {ratio:.1f}x "
          f"over the first {config.early_steps} steps", flush=True)
  results.update(train_steps=config.num_train_steps, early_steps=config.early_steps,
                 num_eval_samples=config.num_eval_samples, min_share=config.min_share,
                 wall_seconds=time.time() - t0)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in all_rows)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  real = np.asarray(ring_sampler(data.num_modes, data.radius, data.std)(
      jax.random.key(config.seed + 1), config.num_eval_samples))
  visualize.plot_ring(real, finals, means, data.std, results,
                      os.path.join(workdir, "samples.png"))
  visualize.plot_ring_curves(all_rows, per_step, config.early_steps,
                             os.path.join(workdir, "curves.png"))
  print(f"{os.path.join(workdir, 'samples.png')}, {os.path.join(workdir, 'curves.png')}",
        flush=True)
  return results
