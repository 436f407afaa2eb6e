"""1-D toy problems with closed-form densities, for checking the paper's theory.

With an affine generator G(z) = a z + b of standard normal noise, p_g is
N(b, |a|) in closed form, so D's curve can be compared with Proposition 1's
D*(x) = p_data / (p_data + p_g), and V(D, G) with C(G) = -log 4 + 2 JSD.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from gan_jax import losses, optim
from gan_jax.errors import UserError
from gan_jax.loop import SamplerSource, train_discriminator
from gan_jax.run import build, experiment, schema
from gan_jax.run.experiment import Context, Data
from gan_jax.run.schema import Field
from gan_jax.state import GAN, GANState, init_state
from projects.gaussian_1d import plots


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


def make_gan(configs: Sequence[Any]) -> GAN:
  """The spec of gaussian_1d configs: an affine G (no hidden layer) of 1-d normal noise."""
  config = configs[0]
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
      latent_dim=m.latent_dim, latent_dist="normal",
      g_loss=build.loss_choices([c.gan.g_loss for c in configs]),
      d_loss=build.loss_choices([c.gan.get("d_loss", "bce") for c in configs]),
      real_label=config.gan.real_label, ema_decay=config.gan.get("ema_decay", 0.0),
      ema_power=config.gan.get("ema_power", 0.0), k=config.gan.k,
      update_rule=config.gan.update_rule,
      grad_norms=config.gan.get("grad_norms", True))


def _gaussian_sampler(mean: float, std: float):
  def sample(key, n):
    return mean + std * jax.random.normal(key, (n, 1))
  return sample


GRID_POINTS = 4001  # where densities, D and the integrals are evaluated
FIGURE_EVERY = 10  # Figure 1 draws D at every 10th grid point (kept in the run's memory)


class Gaussian1D(experiment.Experiment):
  """Proposition 1 and Theorem 1 on p_data = N(mean, std^2) with an affine G (closed-form p_g).

  (a) ``start``, before step 0: G fixed, D trained alone with Adam's step decayed
      20-fold, then compared with D* on a grid, and V(D, G) with C(G) = -log 4 + 2 JSD.
  (b) training (Algorithm 1): each evaluation tracks JSD(p_data || p_g), D's
      distance from 1/2, V and C(G), G's scale and shift.
  (c) figure1.png: p_data, p_g and D after (a), at ``figure_steps`` and at the
      end, like the paper's Figure 1; curves.png: JSD and max |D - 1/2| by step.
  ``finish`` writes results.json.
  """

  fields = {
      "data": {"mean": Field("float"), "std": schema.positive("float")},
      "model": {
          "latent_dim": Field("int", lambda v: v == 1, "1 (G(z) = a z + b of 1-d noise)"),
          "generator": {"init_scale": schema.positive("float"),
                        "start_scale": Field("float"), "start_shift": Field("float")},
          "discriminator": schema.MLP_PLAYERS["discriminator"],
      },
      "d_pretrain_steps": Field("int", lambda v: v >= 0, "an integer >= 0"),
      "figure_steps": Field("ints"),
      "grid": Field("floats", lambda v: len(v) == 2 and v[0] < v[1],
                    "two numbers (lo, hi) with lo < hi"),
  }
  resumable = ("figure_steps", "grid")

  @classmethod
  def check(cls, config, num_devices) -> None:
    super().check(config, num_devices)
    off = [s for s in config.figure_steps if s % config.eval_every]
    if off:
      raise UserError(f"config.figure_steps {tuple(config.figure_steps)} has steps that are not "
                      f"multiples of config.eval_every={config.eval_every} ({off}), so no "
                      f"evaluation would draw them; change either.")
    if config.optimizer.name != "adam":
      raise UserError(f"config.optimizer.name is {config.optimizer.name!r}; part (a) settles "
                      f"D with a decayed Adam built from config.optimizer's b1 and b2, so use "
                      f"'adam'.")

  def load_data(self) -> Data:
    d = self.config.data
    return Data(source=SamplerSource(_gaussian_sampler(d.mean, d.std)), dim=1)

  def make_gan(self, data: Data) -> GAN:
    return make_gan(self.configs)

  def initial_state(self, ctx: Context) -> GANState:
    state = init_state(ctx.gan, jax.random.fold_in(ctx.root, 0), jnp.zeros((1, 1)),
                       hparams=build.replica_hparams(ctx.config))
    g = ctx.config.model.generator
    return state.replace(g=state.g.replace(
        params=affine_generator_params(g.start_scale, g.start_shift)))

  @staticmethod
  def _grid(config: Any) -> tuple[np.ndarray, float, np.ndarray]:
    x = np.linspace(*config.grid, GRID_POINTS)
    return x, x[1] - x[0], gaussian_pdf(x, config.data.mean, config.data.std)

  def snapshot(self, ctx: Context, state: GANState) -> dict:
    """The closed-form quantities of ``state`` on the grid (scalars, and D for the figure)."""
    x, dx, p_data = self._grid(ctx.config)
    p_g = affine_generator_density(state.g_params, x)
    dv = discriminator_on_grid(ctx.gan, state.d_params, x)
    support = (p_data + p_g) > 0.05
    d_star = np.asarray(losses.optimal_discriminator(jnp.asarray(p_data), jnp.asarray(p_g)))
    return {"jsd": losses.jensen_shannon(p_data, p_g, dx),
            "value": value_on_grid(p_data, p_g, dv, dx),
            "c_of_g": losses.optimal_value(p_data, p_g, dx),
            "max_abs_d_minus_d_star": float(np.abs(dv - d_star)[support].max()),
            "max_abs_d_minus_half": float(np.abs(dv - 0.5)[p_data > 0.05].max()),
            "g_scale": float(np.asarray(state.g_params["output"]["kernel"]).reshape(())),
            "g_shift": float(np.asarray(state.g_params["output"]["bias"]).reshape(())),
            "d_curve": [round(float(v), 6) for v in dv[::FIGURE_EVERY]]}

  def start(self, ctx: Context) -> GANState:
    c, opt, state = ctx.config, ctx.config.optimizer, ctx.state
    assert state is not None
    # (a) D alone, against the fixed initial G, with Adam's step decayed 20-fold to settle D.
    settle = optax.adam(optax.exponential_decay(opt.learning_rate, c.d_pretrain_steps, 0.05),
                        b1=opt.b1, b2=opt.b2)
    gan_a = dataclasses.replace(ctx.gan, d_optimizer=settle)
    state = state.replace(d=state.d.replace(opt_state=settle.init(state.d_params)))
    state, _ = train_discriminator(gan_a, state, _gaussian_sampler(c.data.mean, c.data.std),
                                   jax.random.fold_in(ctx.root, 2), num_steps=c.d_pretrain_steps,
                                   batch_size=c.batch_size, kernels=ctx.kernels)
    # D's own optimizer, freshly initialised (zero moments, this replica's learning rate).
    fresh = self.initial_state(ctx).d.opt_state
    state = state.replace(d=state.d.replace(opt_state=fresh))
    # (b) then starts from this state: the step counter restarts at 0.
    state = state.replace(step=jnp.zeros((), jnp.int32))
    a = self.snapshot(ctx, state)
    part_a = {"max_abs_d_minus_d_star": a["max_abs_d_minus_d_star"], "value": a["value"],
              "c_of_g": a["c_of_g"], "abs_value_minus_c_of_g": abs(a["value"] - a["c_of_g"]),
              "jsd": a["jsd"], "d_steps": c.d_pretrain_steps}
    print(f"(a) G fixed, D trained {c.d_pretrain_steps} steps: max |D - D*| = "
          f"{part_a['max_abs_d_minus_d_star']:.4f} where p_data + p_g > 0.05; V(D, G) = "
          f"{part_a['value']:.4f} vs C(G) = -log 4 + 2 JSD = {part_a['c_of_g']:.4f} "
          f"(|diff| {part_a['abs_value_minus_c_of_g']:.4f} nats)", flush=True)
    ctx.memory.update(part_a=part_a, stages={"0": _stage(a)})
    return state

  def evaluate(self, ctx: Context) -> dict:
    assert ctx.state is not None
    s = self.snapshot(ctx, ctx.state)
    if ctx.step in ctx.config.figure_steps or ctx.step == ctx.config.num_train_steps:
      ctx.memory["stages"][str(ctx.step)] = _stage(s)
    return {k: v for k, v in s.items() if k != "d_curve"}

  def plot(self, ctx: Context) -> None:
    plots.curves([r for r in ctx.rows if "jsd" in r], ctx.out.path("curves.png"))

  def finish(self, ctx: Context) -> None:
    assert ctx.state is not None
    c, out = ctx.config, ctx.out
    final = self.snapshot(ctx, ctx.state)
    part_a = ctx.memory["part_a"]
    results = {
        "part_a": part_a,
        "part_b": {k: final[k] for k in ("jsd", "max_abs_d_minus_half", "g_scale", "g_shift",
                                         "value", "c_of_g")},
        "initial_jsd": part_a["jsd"], "data": {"mean": c.data.mean, "std": c.data.std},
        "train_steps": c.num_train_steps, "wall_seconds": ctx.rows[-1]["wall_time"],
    }
    experiment.write_json(out.path("results.json"), results)
    x, _, p_data = self._grid(c)
    xs = x[::FIGURE_EVERY]
    stages = [{"step": int(step), "d": np.asarray(st["d"]), "jsd": st["jsd"],
               "p_g": gaussian_pdf(xs, st["g_shift"], abs(st["g_scale"]))}
              for step, st in sorted(ctx.memory["stages"].items(), key=lambda kv: int(kv[0]))]
    plots.figure1(xs, p_data[::FIGURE_EVERY], stages, out.path("figure1.png"))
    b = results["part_b"]
    print(f"(b) both trained {c.num_train_steps} steps: JSD {part_a['jsd']:.4f} -> "
          f"{b['jsd']:.5f} nats; max |D - 1/2| where p_data > 0.05: "
          f"{b['max_abs_d_minus_half']:.4f}; G(z) = {b['g_scale']:.3f} z + {b['g_shift']:.3f} "
          f"(data: {c.data.std} z + {c.data.mean})", flush=True)
    print(f"(c) {out.path('figure1.png')}, {out.path('curves.png')}", flush=True)


def _stage(snapshot: dict) -> dict:
  return {"d": snapshot["d_curve"], "jsd": snapshot["jsd"], "g_scale": snapshot["g_scale"],
          "g_shift": snapshot["g_shift"]}
