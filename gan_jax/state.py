"""The GAN spec (static, hashable, validated) and the training state (a pytree).

The spec says *what* is trained: the two Flax modules, their optax
optimizers, the losses, the game's options. It is frozen and hashable, so it
can be a static argument of ``jax.jit`` and a closure constant of a scanned or
vmapped loop; it is checked in full when it is made.

The state holds every array that training changes, including the numbers a
sweep varies per replica (``GANState.hparams`` and the optimizers' injected
learning rates). A vmapped sweep is then ``jax.vmap`` over stacked states
under one spec: nothing about a replica is traced into the spec.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from gan_jax import losses

Params = Any
Collections = dict[str, Any]
LATENT_DISTS = ("uniform", "normal")
UPDATES = ("alternating", "simultaneous")
LAYOUT_VERSION = 2  # of GANState as checkpointed; 1 (unrecorded) had flat g_params/d_params
HPARAM_KEYS = ("real_label", "ema_decay", "g_loss", "d_loss")
LEARNING_RATE_KEYS = ("d_learning_rate", "g_learning_rate")

# The allowed values of the game's numeric options: the one definition that GAN,
# set_hparams and the config schema (gan_jax.run.schema) check against.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "real_label": (lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"),
    "ema_decay": (lambda v: 0.0 <= v < 1.0, "a number in [0, 1) (0: no EMA)"),
    "ema_power": (lambda v: v >= 0.0, "a number >= 0 (0: a constant decay)"),
    "k": (lambda v: v >= 1, "an integer >= 1 (D updates per G update)"),
}


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_option(name: str, value: Any, where: str) -> None:
  """Raise ValueError, naming ``where``, unless ``value`` is allowed for option ``name``."""
  rule, expect = RULES[name]
  if not (_is_number(value) and (name != "k" or isinstance(value, (int, np.integer)))
          and rule(value)):
    raise ValueError(f"{where} is {value!r}; it must be {expect}.")


def option_conflict(update_rule: str, k: int, ema_decay: float, ema_power: float,
                    prefix: str) -> str | None:
  """What is wrong with this combination of the game's options (fields named with
  ``prefix``, e.g. "GAN." or "config.gan."), or None."""
  if update_rule == "simultaneous" and k != 1:
    return (f"{prefix}k is {k} but {prefix}update_rule is 'simultaneous', which uses one "
            f"minibatch per iteration; set {prefix}k=1 or {prefix}update_rule='alternating'")
  if ema_power and not ema_decay:
    return (f"{prefix}ema_power is {ema_power}, which shapes G's EMA, but {prefix}ema_decay is "
            f"0 (no EMA); set {prefix}ema_decay to the cap on the decay (e.g. 0.99999), or "
            f"{prefix}ema_power=0")
  return None


@dataclasses.dataclass(frozen=True)
class GAN:
  """Everything static about a GAN: players, optimizers, losses and the game's options.

  Attributes:
    generator: Linen module called as ``G.apply(variables, z, train=bool) -> x``
      (``train=False`` in sampling; it may hold variable collections such as
      ``batch_stats``, and may use a ``"dropout"`` rng).
    discriminator: Linen module called as ``D.apply(variables, x, train=bool,
      rngs={"dropout": key}) -> out [B]`` (a logit, or a critic value).
    g_optimizer, d_optimizer: optax transformations for each player. To sweep a
      learning rate as an array, build the optimizer with
      ``optax.inject_hyperparams`` and a numeric ``learning_rate``.
    latent_dim: size of z.
    latent_dist: ``"uniform"`` (U(-sqrt 3, sqrt 3), unit variance, the released
      config's) or ``"normal"`` (N(0, I)).
    g_loss, d_loss: a name from ``losses.G_LOSSES`` / ``losses.D_LOSSES``, a callable
      with the signature documented in ``gan_jax.losses``, or a tuple of them: then
      ``state.hparams["g_loss"]`` (``"d_loss"``) picks one per replica.
    d_regularizer: None, or ``reg(d_fn, real, fake, rng) -> scalar`` added to D's loss
      (``losses.R1(gamma)``, ``losses.GradientPenalty(weight)``, or your own).
    real_label: initial D target for real data; < 1 is one-sided label smoothing.
    ema_decay: 0 (no EMA), or the initial decay of an exponential moving average of
      G's parameters, updated after every G update: ``ema <- d * ema + (1 - d) * params``.
    ema_power: 0 (the decay is constant), or gamma > 0 of a power-function EMA
      (Karras et al. 2024, "Analyzing and improving the training dynamics of diffusion
      models", sec. 3.1): at G update t the decay is ``min(ema_decay, (1 - 1/t)^(gamma+1))``,
      so the EMA is an average of all of G's iterates weighted by about ``t^gamma``: it
      spans the last ~1/(gamma + 2) of the run at every length (early on it is short and
      sharp, late in a long run long), and ``ema_decay`` caps how long it gets.
    k: D updates per G update in the alternating mode (Algorithm 1).
    grad_norms: record each player's gradient norm (metrics ``d_grad_norm``,
      ``g_grad_norm``) at every step; False leaves them out (one pass over both
      players' gradients less; the update is the same).
    update_rule: ``"alternating"`` (Algorithm 1: k D steps, then a G step on fresh
      noise) or ``"simultaneous"`` (the authors' MNIST run: both players'
      gradients from one minibatch and the same samples, applied together).

  ``real_label``, ``ema_decay`` and a loss choice are *initial* values:
  ``init_state`` writes them into ``state.hparams`` and the steps read them
  from there, so replicas of a sweep may hold different ones.
  """

  generator: nn.Module
  discriminator: nn.Module
  g_optimizer: optax.GradientTransformation
  d_optimizer: optax.GradientTransformation
  latent_dim: int
  latent_dist: str = "uniform"
  g_loss: losses.LossSpec = "non_saturating"
  d_loss: losses.LossSpec = "bce"
  d_regularizer: Any = None
  real_label: float = 1.0
  ema_decay: float = 0.0
  ema_power: float = 0.0
  k: int = 1
  update_rule: str = "alternating"
  grad_norms: bool = True

  def __post_init__(self):
    def bad(field, value, need):
      return ValueError(f"GAN.{field} is {value!r}; {need}.")
    for field in ("generator", "discriminator"):
      if not isinstance(getattr(self, field), nn.Module):
        raise bad(field, getattr(self, field), "it must be a flax.linen Module instance")
    for field in ("g_optimizer", "d_optimizer"):
      opt = getattr(self, field)
      if not (callable(getattr(opt, "init", None)) and callable(getattr(opt, "update", None))):
        raise bad(field, opt, "it must be an optax.GradientTransformation")
    if not (isinstance(self.latent_dim, int) and self.latent_dim >= 1):
      raise bad("latent_dim", self.latent_dim, "it must be an integer >= 1")
    if self.latent_dist not in LATENT_DISTS:
      raise bad("latent_dist", self.latent_dist, f"use one of {LATENT_DISTS}")
    if self.update_rule not in UPDATES:
      raise bad("update_rule", self.update_rule, f"use one of {UPDATES}")
    for name in RULES:
      check_option(name, getattr(self, name), f"GAN.{name}")
    conflict = option_conflict(self.update_rule, self.k, self.ema_decay, self.ema_power, "GAN.")
    if conflict:
      raise ValueError(conflict + ".")
    losses.resolve(self.g_loss, "g")
    losses.resolve(self.d_loss, "d")
    if self.d_regularizer is not None and not callable(self.d_regularizer):
      raise bad("d_regularizer", self.d_regularizer,
                "it must be None or a callable reg(d_fn, real, fake, rng) -> scalar")
    try:
      hash(self)
    except TypeError as e:
      raise ValueError(f"GAN must be hashable (it is a static argument of jax.jit), but a "
                       f"field holds an unhashable value ({e}); use tuples, not lists, and "
                       f"frozen dataclasses or functions for callables.") from None

  @property
  def g_loss_fns(self) -> tuple[Any, ...]:
    return losses.resolve(self.g_loss, "g")

  @property
  def d_loss_fns(self) -> tuple[Any, ...]:
    return losses.resolve(self.d_loss, "d")

  @property
  def d_outputs_logits(self) -> bool:
    """Whether D's output is the logit of a probability, i.e. every D loss choice is the
    paper's BCE: then the steps report D(x), D(G(z)) and V(D, G); a critic's (hinge,
    Wasserstein, least squares, your own) mean outputs are reported as they are."""
    return all((fn.base if isinstance(fn, losses.OnLogit) else fn) is losses.discriminator_loss
               for fn in self.d_loss_fns)

  @property
  def g_loss_sees_real(self) -> bool:
    """Whether a G loss choice reads D's outputs on data (``g_loss(fake_out, *, real_out)``)."""
    return any(losses.takes_real(fn) for fn in self.g_loss_fns)

  @property
  def has_ema(self) -> bool:
    """Whether the state keeps an EMA of G's parameters."""
    return self.ema_decay > 0.0

  @property
  def real_batches_per_step(self) -> int:
    """Real minibatches one training iteration consumes (k, or 1 when simultaneous)."""
    return self.k if self.update_rule == "alternating" else 1

  @property
  def noise_batches_per_step(self) -> int:
    """Noise minibatches one training iteration consumes (k + 1, or 1 when simultaneous)."""
    return self.k + 1 if self.update_rule == "alternating" else 1


class PlayerState(struct.PyTreeNode):
  """One player: its parameters, its other Flax variable collections, its optimizer state.

  ``collections``: every variable collection of the module besides ``params``
  (e.g. ``{"batch_stats": ...}``; ``{}`` for the paper's MLPs).
  """

  params: Params
  collections: Collections
  opt_state: optax.OptState

  @property
  def variables(self) -> dict[str, Any]:
    """What ``module.apply`` takes: ``{"params": ..., **collections}``."""
    return {"params": self.params, **self.collections}


class GANState(struct.PyTreeNode):
  """Training state: iteration count, both players, G's EMA and the per-replica hyperparameters.

  Attributes:
    step: int32 scalar, completed training iterations.
    g, d: the players (``PlayerState``).
    ema_params: EMA of G's parameters (None when the spec keeps none).
    hparams: float32/int32 scalars read by the steps: ``real_label``,
      ``ema_decay``, ``g_loss`` and ``d_loss`` (indices into the spec's loss tuples).
  """

  step: jax.Array
  g: PlayerState
  d: PlayerState
  ema_params: Params | None
  hparams: dict[str, jax.Array]

  @property
  def g_params(self) -> Params:
    return self.g.params

  @property
  def d_params(self) -> Params:
    return self.d.params


def sample_latent(gan: GAN, rng: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Noise z ~ p_z of shape ``shape + (latent_dim,)``, float32, unit variance per dimension."""
  full = tuple(shape) + (gan.latent_dim,)
  if gan.latent_dist == "uniform":
    r = math.sqrt(3.0)
    return jax.random.uniform(rng, full, jnp.float32, -r, r)
  return jax.random.normal(rng, full, jnp.float32)


def _split_variables(variables: Mapping[str, Any]) -> tuple[Params, Collections]:
  variables = dict(variables)
  return variables.pop("params", {}), variables


CondSpec = tuple[tuple[int, ...], str] | None  # a condition's per-example shape and dtype


def _cond_kwargs(cond: CondSpec, n: int) -> dict[str, Any]:
  """``{"cond": zeros [n, ...]}`` for a conditional GAN's players, else {}."""
  return {} if cond is None else {"cond": jnp.zeros((n,) + cond[0], cond[1])}


@functools.partial(jax.jit, static_argnums=(0, 1, 3))
def _init(gan: GAN, feature_shape: tuple[int, ...], rng: jax.Array,
          cond: CondSpec = None) -> GANState:
  g_key, d_key = jax.random.split(rng)
  z = jnp.zeros((1, gan.latent_dim), jnp.float32)
  x = jnp.zeros((1,) + feature_shape, jnp.float32)
  c = _cond_kwargs(cond, 1)
  g_params, g_cols = _split_variables(gan.generator.init(g_key, z, train=False, **c))
  d_params, d_cols = _split_variables(gan.discriminator.init({"params": d_key}, x, train=False,
                                                             **c))
  return GANState(
      step=jnp.zeros((), jnp.int32),
      g=PlayerState(g_params, g_cols, gan.g_optimizer.init(g_params)),
      d=PlayerState(d_params, d_cols, gan.d_optimizer.init(d_params)),
      ema_params=g_params if gan.has_ema else None,
      hparams=default_hparams(gan),
  )


def check_key(rng: Any, name: str) -> None:
  """Raise ValueError unless ``rng`` is a PRNG key (typed, or a raw uint32 [2] one)."""
  dtype = getattr(rng, "dtype", None)
  if dtype is not None and (jnp.issubdtype(dtype, jax.dtypes.prng_key) or
                            (dtype == np.uint32 and np.shape(rng)[-1:] == (2,))):
    return
  what = f"of dtype {dtype}" if dtype is not None else f"a {type(rng).__name__}"
  raise ValueError(f"{name} is {rng!r} ({what}), not a PRNG key; pass jax.random.key(seed), "
                   f"e.g. jax.random.key(0).")


def _check_example(gan: GAN, example_shape: tuple[int, ...], cond: CondSpec = None) -> None:
  """Check, from shapes alone, that G's samples have the example's shape and D gives one
  output per example."""
  feature_shape = example_shape[1:]

  def shapes():
    key = jax.random.key(0)
    z = jnp.zeros((2, gan.latent_dim), jnp.float32)
    c1, c2 = _cond_kwargs(cond, 1), _cond_kwargs(cond, 2)
    g_vars = gan.generator.init(key, z[:1], train=False, **c1)
    g_out = gan.generator.apply(g_vars, z, train=False, **c2)
    x = jnp.zeros((2,) + feature_shape, jnp.float32)
    d_vars = gan.discriminator.init({"params": key}, x[:1], train=False, **c1)
    return g_out, gan.discriminator.apply(d_vars, x, train=False, **c2)

  g_out, d_out = jax.eval_shape(shapes)
  sample = "[B, " + ", ".join(str(d) for d in g_out.shape[1:]) + "]"
  if tuple(g_out.shape[1:]) != feature_shape:
    if feature_shape[1:] == tuple(g_out.shape[1:]):
      raise ValueError(f"real_example has shape {example_shape}: a stack of minibatches; "
                       f"init_state takes one minibatch shaped like G's samples, {sample} "
                       f"(e.g. real_batches[0]).")
    raise ValueError(f"real_example has shape {example_shape}, but G's samples are {sample}; "
                     f"make G's output the data's shape, or reshape the data to G's.")
  if isinstance(d_out, jax.ShapeDtypeStruct) and tuple(d_out.shape) in ((2,), (2, 1)):
    return
  shapes = jax.tree.map(lambda o: tuple(o.shape), d_out)
  built_in = [f for f in gan.d_loss_fns + gan.g_loss_fns
              if f in losses.D_LOSSES.values() or f in losses.G_LOSSES.values()]
  if built_in or gan.d_regularizer is not None:
    raise ValueError(f"D's output for a batch of 2 examples is {shapes}; the built-in losses "
                     f"and regularisers take [B] or [B, 1], one logit (or critic value) per "
                     f"example. Return that, or give the GAN a d_loss and a g_loss of your own "
                     f"that read D's output (gan_jax.losses: signatures).")
  if any(len(o.shape) < 1 or o.shape[0] != 2 for o in jax.tree.leaves(d_out)):
    raise ValueError(f"D's output for a batch of 2 examples is {shapes}; every array in it "
                     f"must have one row per example, [B, ...].")


def default_hparams(gan: GAN) -> dict[str, jax.Array]:
  """The spec's initial per-replica hyperparameters, as ``state.hparams`` holds them."""
  return {"real_label": jnp.asarray(gan.real_label, jnp.float32),
          "ema_decay": jnp.asarray(gan.ema_decay, jnp.float32),
          "g_loss": jnp.zeros((), jnp.int32), "d_loss": jnp.zeros((), jnp.int32)}


def init_state(gan: GAN, rng: jax.Array, real_example: jax.Array, *,
               g_output_bias: np.ndarray | jax.Array | None = None,
               hparams: Mapping[str, Any] | None = None) -> GANState:
  """Initial GANState (one compiled call).

  Args:
    gan: the spec.
    rng: PRNG key.
    real_example: a batch shaped like the real data, ``[B, ...]``, or a pair
      ``(x, cond)`` for a conditional GAN, whose players are then called with
      ``cond=`` (see ``steps.split_batch``); only shapes and the condition's dtype are read.
    g_output_bias: optional value for G's ``output/bias`` (e.g.
      ``players.marginal_output_bias(train_mean)``, the authors' initialisation).
    hparams: optional per-replica values replacing the spec's (see ``set_hparams``).
  """
  check_key(rng, "init_state's rng")
  cond: CondSpec = None
  if isinstance(real_example, (tuple, list)) and len(real_example) == 2:
    real_example, c = real_example
    cond = (tuple(int(d) for d in np.shape(c)[1:]), str(jnp.asarray(c).dtype))
  example_shape = tuple(int(d) for d in np.shape(real_example))
  _check_example(gan, example_shape, cond)
  state = _init(gan, example_shape[1:], rng, cond)
  if g_output_bias is not None:
    old = state.g.params["output"]["bias"]
    bias = jnp.asarray(g_output_bias, old.dtype)
    if bias.shape != old.shape:
      raise ValueError(f"g_output_bias has shape {bias.shape}; G's output bias has shape "
                       f"{old.shape}.")
    g_params = {**state.g.params, "output": {**state.g.params["output"], "bias": bias}}
    # Optimizer states start from zeros/counts, independent of parameter values.
    state = state.replace(g=state.g.replace(params=g_params),
                          ema_params=g_params if gan.has_ema else None)
  return set_hparams(gan, state, hparams) if hparams else state


def _loss_index(gan: GAN, which: str, value: Any) -> int:
  spec = getattr(gan, f"{which}_loss")
  items = spec if isinstance(spec, tuple) else (spec,)
  if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
    if 0 <= value < len(items):
      return int(value)
  elif value in items:
    return items.index(value)
  raise ValueError(f"hparams[{which + '_loss'!r}] is {value!r}; this GAN's {which}_loss "
                   f"choices are {items} (give one of them or its index).")


def _with_learning_rate(opt_state: Any, value: Any, which: str) -> Any:
  hp = getattr(opt_state, "hyperparams", None)
  if not isinstance(hp, dict) or "learning_rate" not in hp:
    raise ValueError(
        f"hparams sets {which}, but that player's optimizer keeps no learning rate in its "
        f"state; build it with optax.inject_hyperparams(...)(learning_rate=<number>, ...).")
  if "learning_rate" in getattr(opt_state, "hyperparams_states", {}):
    raise ValueError(f"hparams sets {which}, but that optimizer's learning rate is a "
                     f"schedule recomputed every step; inject a numeric learning_rate instead.")
  old = hp["learning_rate"]
  return opt_state._replace(hyperparams={**hp, "learning_rate": jnp.asarray(value, old.dtype)})


def set_hparams(gan: GAN, state: GANState, values: Mapping[str, Any]) -> GANState:
  """``state`` with some per-replica hyperparameters replaced.

  Keys: ``real_label``, ``ema_decay`` (numbers; the EMA's decay only changes
  when the spec keeps an EMA), ``g_loss`` / ``d_loss`` (an index into the spec's
  loss tuple, or one of its entries), and ``d_learning_rate`` /
  ``g_learning_rate`` (written into the optimizer state; the optimizer must be
  built with ``optax.inject_hyperparams`` and a numeric learning rate).
  """
  unknown = set(values) - set(HPARAM_KEYS) - set(LEARNING_RATE_KEYS)
  if unknown:
    raise ValueError(f"hparams has unknown keys {sorted(unknown)}; use "
                     f"{HPARAM_KEYS + LEARNING_RATE_KEYS}.")
  hp = dict(state.hparams)
  g, d = state.g, state.d
  for key, value in values.items():
    if key in ("real_label", "ema_decay"):
      check_option(key, value, f"hparams[{key!r}]")
      hp[key] = jnp.asarray(value, jnp.float32)
    elif key in ("g_loss", "d_loss"):
      hp[key] = jnp.asarray(_loss_index(gan, key[0], value), jnp.int32)
    elif key == "d_learning_rate":
      d = d.replace(opt_state=_with_learning_rate(d.opt_state, value, key))
    else:
      g = g.replace(opt_state=_with_learning_rate(g.opt_state, value, key))
  return state.replace(g=g, d=d, hparams=hp)
