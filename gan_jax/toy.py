"""1-D toy problems with closed-form densities, for checking the paper's theory.

With an affine generator G(z) = a z + b of standard normal noise, p_g is
N(b, |a|) in closed form, so D's curve can be compared with Proposition 1's
D*(x) = p_data / (p_data + p_g), and V(D, G) with C(G) = -log 4 + 2 JSD.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax import lax

from gan_jax import losses, optim, steps
from gan_jax.state import GAN, GANState, init_state


def gaussian_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
  """N(mean, std^2) density at x, float64."""
  x = np.asarray(x, np.float64)
  return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * np.sqrt(2.0 * np.pi))


def affine_generator_params(scale: float, shift: float) -> dict:
  """Parameters of ``MLPGenerator(output_dim=1, hidden=(), output_activation="linear")``
  that make G(z) = scale * z + shift."""
  return {"output": {"kernel": jnp.array([[scale]], jnp.float32),
                     "bias": jnp.array([shift], jnp.float32)}}


def affine_generator_density(g_params: dict, x: np.ndarray) -> np.ndarray:
  """p_g at x for an affine G of N(0, 1) noise: N(bias, |kernel|)."""
  a = float(np.asarray(g_params["output"]["kernel"]).reshape(()))
  b = float(np.asarray(g_params["output"]["bias"]).reshape(()))
  return gaussian_pdf(x, b, abs(a))


def discriminator_steps(gan: GAN, state: GANState,
                        sample_real: Callable[[jax.Array, int], jax.Array], key: jax.Array, *,
                        num_steps: int, batch_size: int) -> tuple[GANState, jax.Array]:
  """``num_steps`` D updates with G held fixed (Proposition 1's setting); returns D's losses.

  Not jitted (so that it can run under ``jax.vmap`` over replicas' states);
  ``train_discriminator`` is its compiled form.
  """

  def body(state, i):
    k = jax.random.fold_in(key, i)
    real = sample_real(jax.random.fold_in(k, 0), batch_size)
    state, metrics = steps.d_step(gan, state, real, jax.random.fold_in(k, 1))
    return state, metrics["d_loss"]

  return lax.scan(body, state, jnp.arange(num_steps))


train_discriminator = jax.jit(discriminator_steps, static_argnums=(0, 2),
                              static_argnames=("num_steps", "batch_size"))


@functools.partial(jax.jit, static_argnums=0)
def _d_probs(gan: GAN, d_params: dict, x: jax.Array) -> jax.Array:
  return jax.nn.sigmoid(gan.discriminator.apply({"params": d_params}, x, train=False))


def discriminator_on_grid(gan: GAN, d_params: dict, grid: np.ndarray) -> np.ndarray:
  """D(x) = sigmoid(logit) at each grid point (no dropout), float64."""
  x = jnp.asarray(np.asarray(grid)[:, None], jnp.float32)
  return np.asarray(_d_probs(gan, d_params, x), np.float64)


def value_on_grid(p_data: np.ndarray, p_g: np.ndarray, d: np.ndarray, dx: float) -> float:
  """V(D, G) = ∫ p_data log D + p_g log(1 - D) dx by the rectangle rule, in nats."""
  d = np.clip(d, 1e-12, 1.0 - 1e-12)
  return float(np.sum(p_data * np.log(d) + p_g * np.log(1.0 - d)) * dx)


# --- The experiment: experiments/gaussian_1d.py ------------------------------


def make_affine_gan(config) -> GAN:
  """The GAN spec of a gaussian_1d config: an affine G (no hidden layer) of 1-d normal noise."""
  from gan_jax import build  # pylint: disable=import-outside-toplevel
  m = config.model
  g_cfg = ml_collections.ConfigDict(dict(hidden=(), activation="relu",
                                         output_activation="linear",
                                         init_scale=m.generator.init_scale))
  opt = config.optimizer
  return GAN(
      generator=build.make_generator(g_cfg, 1, "float32"),
      discriminator=build.make_discriminator(m.discriminator, "float32"),
      g_optimizer=optim.make_optimizer(config.get("g_optimizer") or opt, steps_per_epoch=1),
      d_optimizer=optim.make_optimizer(opt, steps_per_epoch=1),
      latent_dim=m.latent_dim, latent_dist="normal", g_loss=config.gan.g_loss,
      k=config.gan.k, update_rule=config.gan.update_rule)


def _gaussian_sampler(mean: float, std: float):
  def sample(key, n):
    return mean + std * jax.random.normal(key, (n, 1))
  return sample


def run_gaussian_1d(config, workdir: str) -> dict:
  """Proposition 1 and Theorem 1 on p_data = N(mean, std^2) with an affine G (closed-form p_g).

  (a) G fixed: D trained to convergence is compared with D* on a grid, and
      V(D, G) with C(G) = -log 4 + 2 JSD.
  (b) Both players trained (Algorithm 1): JSD(p_data || p_g) and D's distance
      from 1/2 are tracked.
  (c) figure1.png: p_data, p_g and D at several stages, like the paper's Figure 1;
      curves.png: JSD and max |D - 1/2| against the step.
  Writes results.json and metrics.jsonl into ``workdir``; returns the results.
  """
  from gan_jax import loop as loop_lib, visualize  # pylint: disable=import-outside-toplevel
  os.makedirs(workdir, exist_ok=True)
  d = config.data
  sample_real = _gaussian_sampler(d.mean, d.std)
  gan = make_affine_gan(config)
  root = jax.random.key(config.seed)
  state = init_state(gan, jax.random.fold_in(root, 0), jnp.zeros((1, 1)))
  g = config.model.generator
  start = affine_generator_params(g.start_scale, g.start_shift)
  state = state.replace(g=state.g.replace(params=start))
  lo, hi = config.grid
  x = np.linspace(lo, hi, 4001)
  dx = x[1] - x[0]
  p_data = gaussian_pdf(x, d.mean, d.std)

  def snapshot(state) -> dict:
    p_g = affine_generator_density(state.g_params, x)
    dv = discriminator_on_grid(gan, state.d_params, x)
    support = (p_data + p_g) > 0.05
    d_star = np.asarray(losses.optimal_discriminator(jnp.asarray(p_data), jnp.asarray(p_g)))
    return {"step": int(state.step), "p_g": p_g, "d": dv,
            "jsd": losses.jensen_shannon(p_data, p_g, dx),
            "value": value_on_grid(p_data, p_g, dv, dx),
            "c_of_g": losses.optimal_value(p_data, p_g, dx),
            "max_abs_d_minus_d_star": float(np.abs(dv - d_star)[support].max()),
            "max_abs_d_minus_half": float(np.abs(dv - 0.5)[p_data > 0.05].max()),
            "g_scale": float(np.asarray(state.g_params["output"]["kernel"]).reshape(())),
            "g_shift": float(np.asarray(state.g_params["output"]["bias"]).reshape(()))}

  t0 = time.time()
  # (a) D alone, against the fixed initial G, with Adam's step decayed 20-fold to settle D.
  opt = config.optimizer
  settle = optax.adam(optax.exponential_decay(opt.learning_rate, config.d_pretrain_steps, 0.05),
                      b1=opt.b1, b2=opt.b2)
  gan_a = dataclasses.replace(gan, d_optimizer=settle)
  state = state.replace(d=state.d.replace(opt_state=settle.init(state.d_params)))
  state, _ = train_discriminator(gan_a, state, sample_real, jax.random.fold_in(root, 1),
                                 num_steps=config.d_pretrain_steps, batch_size=config.batch_size)
  state = state.replace(d=state.d.replace(opt_state=gan.d_optimizer.init(state.d_params)))
  a = snapshot(state)
  part_a = {"max_abs_d_minus_d_star": a["max_abs_d_minus_d_star"], "value": a["value"],
            "c_of_g": a["c_of_g"], "abs_value_minus_c_of_g": abs(a["value"] - a["c_of_g"]),
            "jsd": a["jsd"], "d_steps": config.d_pretrain_steps}

  # (b) both players, from that state; the step counter restarts at 0.
  state = state.replace(step=jnp.zeros((), jnp.int32))
  stages = sorted(set(config.figure_steps) | {config.num_train_steps})
  chunk = math.gcd(*stages, config.log_every)
  tl = loop_lib.TrainLoop(gan, loop_lib.SamplerSource(sample_real), global_batch=config.batch_size,
                          steps_per_call=chunk, parallel="none")
  dstate = tl.put_state(state)
  snaps = {0: a}
  rows = []
  step = 0
  while step < config.num_train_steps:
    dstate, metrics = tl(dstate, None, jax.random.fold_in(root, 2))
    step += chunk
    if step % config.log_every == 0 or step in stages:
      s = snapshot(tl.get_state(dstate))
      if step in stages:
        snaps[step] = s
      rows.append({"step": step, **{k: v for k, v in s.items() if np.isscalar(v)},
                   **{k: float(np.mean(v)) for k, v in jax.device_get(metrics).items()}})
  final = snaps[config.num_train_steps]
  results = {
      "part_a": part_a,
      "part_b": {k: final[k] for k in ("jsd", "max_abs_d_minus_half", "g_scale", "g_shift",
                                       "value", "c_of_g")},
      "initial_jsd": a["jsd"], "data": {"mean": d.mean, "std": d.std},
      "train_steps": config.num_train_steps, "wall_seconds": time.time() - t0,
  }
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  visualize.plot_1d_stages(x, p_data, [snaps[s] for s in sorted(snaps)],
                           os.path.join(workdir, "figure1.png"))
  visualize.plot_1d_curves(rows, os.path.join(workdir, "curves.png"))
  print(f"(a) G fixed, D trained {config.d_pretrain_steps} steps: max |D - D*| = "
        f"{part_a['max_abs_d_minus_d_star']:.4f} where p_data + p_g > 0.05; V(D, G) = "
        f"{part_a['value']:.4f} vs C(G) = -log 4 + 2 JSD = {part_a['c_of_g']:.4f} "
        f"(|diff| {part_a['abs_value_minus_c_of_g']:.4f} nats)", flush=True)
  print(f"(b) both trained {config.num_train_steps} steps: JSD {a['jsd']:.4f} -> "
        f"{final['jsd']:.5f} nats; max |D - 1/2| where p_data > 0.05: "
        f"{final['max_abs_d_minus_half']:.4f}; G(z) = {final['g_scale']:.3f} z + "
        f"{final['g_shift']:.3f} (data: {d.std} z + {d.mean})", flush=True)
  print(f"(c) {os.path.join(workdir, 'figure1.png')}, {os.path.join(workdir, 'curves.png')} "
        f"({results['wall_seconds']:.0f} s)", flush=True)
  return results
