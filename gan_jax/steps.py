"""Pure training steps: one D update, one G update, one full iteration, and sampling.

Every step takes the static ``GAN`` spec first and returns ``(new_state,
metrics)``. With ``axis_name`` set (inside ``jax.pmap`` or ``jax.shard_map``),
gradients, the players' updated variable collections (e.g. BatchNorm
statistics) and the metrics are averaged over that axis with ``lax.pmean``, so
each replica applies the same update and holds the same state; with
``axis_name=None`` there is no collective. Metrics are float32 scalars.
``kernels`` ("plain" or "cpu", see ``gan_jax.kernels``) picks how the players'
products, the gradient norms and the update order are computed; the results agree.

Variable collections: a player applied in training mode updates its
collections (``mutable``). A player's own step writes its updates back; the
other player's pass in that step also runs in training mode (batch
statistics, dropout) but its collection updates are discarded, so ``d_step``
never changes G and ``g_step`` never changes D. Sampling (``generate``) and
evaluation apply G in inference mode.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeGuard

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from gan_jax import kernels as kernels_lib, losses
from gan_jax.state import GAN, GANState, PlayerState, check_key, sample_latent

Metrics = dict[str, jax.Array]
Batch = Any  # an array x [m, ...], or a pair (x, cond): see split_batch
PyTree = Any


def _pmean(tree: PyTree, axis_name: str | None) -> PyTree:
  return tree if axis_name is None else lax.pmean(tree, axis_name)


def _pmean_floats(tree: PyTree, axis_name: str | None) -> PyTree:
  if axis_name is None:
    return tree
  return jax.tree.map(lambda x: lax.pmean(x, axis_name)
                      if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _bound(gan: GAN, kernels: str, axis_name: str | None = None) -> GAN:
  """``gan`` with its players computing with ``kernels`` (those left at kernels="auto") and
  normalising over ``axis_name`` (those with an ``axis_name`` attribute left at None)."""
  if kernels not in ("plain", "cpu"):
    raise ValueError(f"kernels is {kernels!r}; a step takes 'plain' or 'cpu' "
                     f"(gan_jax.kernels.for_devices resolves 'auto').")

  def bind(module):
    module = kernels_lib.bind(module, kernels)
    if axis_name is not None and getattr(module, "axis_name", axis_name) is None:
      module = module.clone(axis_name=axis_name)
    return module

  g, d = bind(gan.generator), bind(gan.discriminator)
  if g is gan.generator and d is gan.discriminator:
    return gan
  return dataclasses.replace(gan, generator=g, discriminator=d)


def split_batch(batch: Any, name: str = "real_batch") -> tuple[jax.Array, jax.Array | None]:
  """A batch of data is an array ``x`` ``[m, ...]``, or a pair ``(x, cond)`` whose condition
  (class labels, attributes, any array ``[m, ...]``) both players are given: ``(x, cond)``,
  cond None for an array."""
  if not isinstance(batch, (tuple, list)):
    return batch, None
  if len(batch) != 2:
    raise ValueError(f"{name} is a sequence of {len(batch)}; give an array x or a pair "
                     f"(x, cond).")
  x, cond = batch
  if np.shape(cond)[:1] != np.shape(x)[:1]:
    raise ValueError(f"{name}'s condition has shape {tuple(np.shape(cond))} but its data "
                     f"{tuple(np.shape(x))}: give one condition per example.")
  return x, cond


def apply_player(module: Any, player: PlayerState, x: jax.Array, *, train: bool,
                 rng: jax.Array | None = None, params: Any = None, cond: Any = None
                 ) -> tuple[jax.Array, dict[str, Any]]:
  """``module`` applied to ``x`` with ``player``'s variables (``params`` overrides its params);
  a conditional player also gets ``cond=cond``.

  Returns the output and the player's collections after the pass: updated in
  training mode, unchanged in inference mode.
  """
  variables = {"params": player.params if params is None else params, **player.collections}
  kwargs: dict[str, Any] = {"rngs": {"dropout": rng}} if rng is not None else {}
  if cond is not None:
    kwargs["cond"] = cond
  if train and player.collections:
    out, updates = module.apply(variables, x, train=True, mutable=list(player.collections),
                                **kwargs)
    return out, {**player.collections, **updates}
  return module.apply(variables, x, train=train, **kwargs), player.collections


def generate(gan: GAN, state: GANState, z: jax.Array, *, ema: bool | None = None,
             collections: dict[str, Any] | None = None, cond: Any = None,
             kernels: str = "plain") -> jax.Array:
  """G(z) in inference mode: samples ``[n, ...]`` for noise ``z`` ``[n, latent_dim]`` (and a
  conditional G's condition ``cond`` ``[n, ...]``).

  ``ema``: use the EMA of G's parameters (True), the raw parameters (False), or
  the EMA when the state keeps one (None, the default). ``collections``: G's other
  variables (e.g. BatchNorm's running statistics); None takes the raw G's, which
  do not match the EMA's weights: ``estimate_collections`` re-estimates them.
  """
  if ema is None:
    ema = state.ema_params is not None
  if ema and state.ema_params is None:
    raise ValueError("generate(..., ema=True) but this state keeps no EMA of G; build the GAN "
                     "with ema_decay > 0, or pass ema=False.")
  params = state.ema_params if ema else state.g.params
  g = state.g if collections is None else state.g.replace(collections=collections)
  out, _ = apply_player(_bound(gan, kernels).generator, g, z, train=False, params=params,
                        cond=cond)
  return out


def estimate_collections(gan: GAN, state: GANState, rng: jax.Array, *, ema: bool = True,
                         num_batches: int = 16, batch_size: int = 256, cond: Any = None,
                         kernels: str = "plain") -> dict[str, Any]:
  """G's running averages (BatchNorm statistics) for its EMA weights (``ema=True``) or raw
  weights: the mean over ``num_batches`` fresh noise batches of each batch's statistics,
  for ``generate(..., collections=...)``. A G without collections gives ``{}``. A
  conditional G takes ``cond`` ``[batch_size, ...]`` with every noise batch.

  Works for any collection that a training pass updates as ``m * old + (1 - m) * stat``
  (flax's BatchNorm): two passes on the same batch from zeros and from ones give ``m``
  and ``stat`` exactly, whatever the momentum.
  """
  g = state.g
  if not g.collections:
    return {}
  params = state.ema_params if ema else g.params
  if params is None:
    raise ValueError("estimate_collections(..., ema=True) but this state keeps no EMA of G.")
  module = _bound(gan, kernels).generator

  def is_float(x):
    return jnp.issubdtype(x.dtype, jnp.floating)

  def after_pass(z, key, start):  # the collections after one training pass from ``start``
    cols = jax.tree.map(lambda x: jnp.full_like(x, start) if is_float(x) else x, g.collections)
    return apply_player(module, g.replace(collections=cols), z, train=True, rng=key,
                        params=params, cond=cond)[1]

  def one_batch(key):
    z = sample_latent(gan, key, (batch_size,))
    from0, from1 = (after_pass(z, jax.random.fold_in(key, 1), v) for v in (0.0, 1.0))
    return jax.tree.map(lambda a, b: a / (1.0 - (b - a)) if is_float(a) else a, from0, from1)

  stats = lax.map(one_batch, jax.random.split(rng, num_batches))
  return jax.tree.map(lambda x: jnp.mean(x, 0) if is_float(x) else x[0], stats)


def _real(batch: jax.Array, fake: jax.Array, name: str) -> jax.Array:
  """``batch`` in the samples' dtype, after checking that it is data G could have drawn."""
  if not jnp.issubdtype(batch.dtype, jnp.floating):
    raise ValueError(f"{name} has dtype {batch.dtype}; the steps take floating-point data "
                     f"scaled as G's outputs are (e.g. uint8 images: x.astype(np.float32) / 255).")
  if batch.shape[1:] != fake.shape[1:]:
    raise ValueError(f"{name} has shape {tuple(batch.shape)}, but G's samples have shape "
                     f"{tuple(fake.shape)}: each example must have G's output shape "
                     f"{tuple(fake.shape[1:])}, the shape of the example init_state was given.")
  return batch.astype(fake.dtype)


def _noise(gan: GAN, rng: jax.Array, batch_size: int, noise: jax.Array | None) -> jax.Array:
  return sample_latent(gan, rng, (batch_size,)) if noise is None else noise


def _update(opt: optax.GradientTransformation, grads, player: PlayerState,
            collections: dict[str, Any]) -> PlayerState:
  updates, opt_state = opt.update(grads, player.opt_state, player.params)
  return PlayerState(optax.apply_updates(player.params, updates), collections, opt_state)


def update_player(gan: GAN, state: GANState, player: str, grads: PyTree,
                  collections: dict[str, Any] | None = None, *, axis_name: str | None = None,
                  kernels: str = "plain") -> tuple[GANState, Metrics]:
  """One player descends ``grads`` (of its loss, w.r.t. its params): the update half of
  ``d_step`` and ``g_step``, for steps of one's own.

  ``player``: "d" or "g". The gradients are averaged over ``axis_name`` (if set),
  ordered for in-place updates (``kernels``), and given to the player's optimizer;
  ``collections`` (its collections after the training pass, e.g. BatchNorm statistics;
  None keeps them) are written back, floats averaged over ``axis_name``. G's update also
  moves the EMA (``ema_update``). ``state.step`` is not advanced.

  Returns the new state and ``{"<player>_grad_norm": ...}`` with ``gan.grad_norms``, else {}.
  """
  if player not in ("d", "g"):
    raise ValueError(f"player is {player!r}; use 'd' or 'g'.")
  k = kernels_lib.get(kernels)
  module, opt, old = ((gan.discriminator, gan.d_optimizer, state.d) if player == "d" else
                      (gan.generator, gan.g_optimizer, state.g))
  grads = k.join_updates(module, _pmean(grads, axis_name))
  cols = old.collections if collections is None else _pmean_floats(collections, axis_name)
  new = _update(opt, grads, old, cols)
  metrics = {f"{player}_grad_norm": k.global_norm(grads)} if gan.grad_norms else {}
  if player == "d":
    return state.replace(d=new), metrics
  return state.replace(g=new, ema_params=ema_update(gan, state, new.params)), metrics


def ema_decay_at(gan: GAN, decay: jax.Array, t: jax.Array) -> jax.Array:
  """The EMA's decay at G update ``t`` (1, 2, ...): ``decay``, or with ``gan.ema_power`` =
  gamma > 0, ``min(decay, (1 - 1/t)^(gamma + 1))`` (0 at the first update)."""
  if gan.ema_power == 0.0:
    return decay
  t = jnp.maximum(jnp.asarray(t, jnp.float32), 1.0)
  return jnp.minimum(decay, (1.0 - 1.0 / t) ** (gan.ema_power + 1.0))


def ema_update(gan: GAN, state: GANState, g_params: PyTree) -> PyTree:
  """G's EMA after G's update to ``g_params`` in iteration ``state.step + 1``:
  ``decay * ema + (1 - decay) * g_params`` (decay from ``ema_decay_at``); None without an EMA."""
  if state.ema_params is None:
    return None
  decay = ema_decay_at(gan, state.hparams["ema_decay"], state.step + 1)
  return optax.incremental_update(g_params, state.ema_params, 1.0 - decay)


def _d_loss(gan: GAN, state: GANState, real_out, fake_out, cond=None) -> jax.Array:
  fns = tuple(functools.partial(losses.call_d_loss, f, cond=cond) for f in gan.d_loss_fns)
  return losses.choose(fns, state.hparams["d_loss"], real_out, fake_out,
                       real_label=state.hparams["real_label"])


def _g_loss(gan: GAN, state: GANState, fake_out, real_out=None, cond=None) -> jax.Array:
  fns = tuple(functools.partial(losses.call_g_loss, f, real_out=real_out, cond=cond)
              for f in gan.g_loss_fns)
  return losses.choose(fns, state.hparams["g_loss"], fake_out)


def _d_fn(gan: GAN, d: PlayerState, params: Any, rng: jax.Array,
          cond: Any = None) -> Callable[[jax.Array], jax.Array]:
  """D in training mode at ``params`` (given ``cond``), for regularisers (collection updates
  discarded)."""
  return lambda x: apply_player(gan.discriminator, d, x, train=True, rng=rng, params=params,
                                cond=cond)[0]


def _d_metrics(gan: GAN, real_out, fake_out, d_loss) -> Metrics:
  """D's loss, and its outputs for what they are: with the BCE loss D(x) and D(G(z)) as
  probabilities and the minibatch V(D, G) (eq. 1); for a critic its mean raw outputs; for a
  D with other outputs (class logits, features: a loss of your own reads them) its loss;
  a D whose outputs are a dict with a ``"logit"`` entry (``features_out``) is read by it."""
  if isinstance(real_out, dict) and "logit" in real_out:
    real_out, fake_out = real_out["logit"], fake_out["logit"]
  if not _per_example_scalar(real_out):
    return {"d_loss": d_loss}
  if not gan.d_outputs_logits:
    return {"d_loss": d_loss, "critic_real": jnp.mean(real_out),
            "critic_fake": jnp.mean(fake_out)}
  return {"d_loss": d_loss, "value": losses.value_function(real_out, fake_out),
          "d_real": jnp.mean(jax.nn.sigmoid(real_out)),
          "d_fake": jnp.mean(jax.nn.sigmoid(fake_out))}


def _per_example_scalar(out: Any) -> TypeGuard[jax.Array]:
  return isinstance(out, jax.Array) and out.ndim == 1


def _flat(out: Any) -> Any:
  """D's outputs as [B] when it gives one number per example ([B] or [B, 1]); any other
  output (a pytree of [B, ...] arrays, for losses of one's own) as it is."""
  if isinstance(out, jax.Array) and out.shape[1:] == (1,):
    return out.reshape(out.shape[0])
  return out


def d_outputs(gan: GAN, d: PlayerState, real: jax.Array, fake: jax.Array, rng: jax.Array, *,
              params: PyTree = None, cond: Any = None
              ) -> tuple[jax.Array, jax.Array, dict[str, Any]]:
  """D (player state ``d``, or its ``params``) in training mode on data and on samples, both
  under condition ``cond`` if given: ``(real_out [m], fake_out [m], collections)``. One
  pass over [real; fake] for a D without collections; with collections (BatchNorm) two,
  data first, so that each half is normalised by its own statistics."""
  if d.collections:
    real_key, fake_key = jax.random.split(rng)
    real_out, cols = apply_player(gan.discriminator, d, real, train=True, rng=real_key,
                                  params=params, cond=cond)
    fake_out, cols = apply_player(gan.discriminator, d.replace(collections=cols), fake,
                                  train=True, rng=fake_key, params=params, cond=cond)
    return _flat(real_out), _flat(fake_out), cols
  m = real.shape[0]
  both = None if cond is None else jax.tree.map(lambda c: jnp.concatenate([c, c]), cond)
  out, cols = apply_player(gan.discriminator, d, jnp.concatenate([real, fake], axis=0),
                           train=True, rng=rng, params=params, cond=both)
  out = _flat(out)  # [2m, ...] (each leaf)
  return (jax.tree.map(lambda o: o[:m], out), jax.tree.map(lambda o: o[m:], out), cols)


def d_step(gan: GAN, state: GANState, real_batch: Batch, rng: jax.Array, *,
           axis_name: str | None = None, noise: jax.Array | None = None,
           kernels: str = "plain") -> tuple[GANState, Metrics]:
  """One discriminator update (Algorithm 1, inner loop).

  Draws m = len(real_batch) noise vectors (or uses ``noise``, [m, latent]), generates
  G(z) in training mode (G's collection updates discarded), runs D with dropout and
  descends D's loss (plus ``gan.d_regularizer``). G's parameters, collections and EMA
  are untouched; ``state.step`` is not advanced.

  Returns:
    The new state and metrics ``d_loss``; with the BCE loss ``value`` (V estimate),
    ``d_real`` (mean D(x)), ``d_fake`` (mean D(G(z))), for a critic ``critic_real``,
    ``critic_fake``; ``d_grad_norm`` (with ``gan.grad_norms``), and ``d_reg`` when D
    has a regulariser.
  """
  check_key(rng, "d_step's rng")
  gan = _bound(gan, kernels, axis_name)
  x, cond = split_batch(real_batch)
  z_key, drop_key = jax.random.split(rng)
  fake, _ = apply_player(gan.generator, state.g, _noise(gan, z_key, x.shape[0], noise),
                         train=True, rng=jax.random.fold_in(drop_key, 1), cond=cond)
  fake = lax.stop_gradient(fake)  # [m, ...]
  real, d = _real(x, fake, "real_batch"), state.d

  def loss_fn(d_params):
    real_out, fake_out, cols = d_outputs(gan, d, real, fake, drop_key, params=d_params,
                                         cond=cond)
    loss = _d_loss(gan, state, real_out, fake_out, cond)
    reg = jnp.zeros((), jnp.float32)
    if gan.d_regularizer is not None:
      reg_key = jax.random.fold_in(drop_key, 2)
      reg = gan.d_regularizer(_d_fn(gan, d, d_params, reg_key, cond), real, fake,
                              jax.random.fold_in(reg_key, 1))
    return loss + reg, (loss, reg, real_out, fake_out, cols)

  (_, (d_loss, reg, real_out, fake_out, cols)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(d.params)
  state, norms = update_player(gan, state, "d", grads, cols, axis_name=axis_name,
                               kernels=kernels)
  metrics = {**_d_metrics(gan, real_out, fake_out, d_loss), **norms}
  if gan.d_regularizer is not None:
    metrics["d_reg"] = reg
  return state, _pmean(metrics, axis_name)


def g_step(gan: GAN, state: GANState, rng: jax.Array, batch_size: int, *,
           axis_name: str | None = None, noise: jax.Array | None = None, cond: Any = None,
           real_batch: Batch | None = None, kernels: str = "plain") -> tuple[GANState, Metrics]:
  """One generator update on fresh noise (Algorithm 1, outer step), then the EMA update.

  Draws ``batch_size`` noise vectors (or uses ``noise``), scores G(z) with D in
  training mode (dropout on, as the authors trained; D's collection updates
  discarded), and descends G's loss. G's collections take this pass's updates.
  D is untouched; ``state.step`` is not advanced. ``cond`` (``[batch_size, ...]``): the
  condition of a conditional GAN's samples, given to both players. ``real_batch``
  (``[m, ...]`` or ``(x, cond)``): data for a G loss that reads D's outputs on data
  (``g_loss(fake_out, *, real_out)``); D's outputs on it are constants of G's gradient.

  Returns:
    The new state and metrics ``g_loss``, ``g_grad_norm`` (with ``gan.grad_norms``).
  """
  check_key(rng, "g_step's rng")
  gan = _bound(gan, kernels, axis_name)
  z_key, drop_key = jax.random.split(rng)
  z = _noise(gan, z_key, batch_size, noise)
  if gan.g_loss_sees_real and real_batch is None:
    raise ValueError("This GAN's g_loss reads D's outputs on data (it takes real_out), so "
                     "g_step needs real_batch=[m, ...] (train_step passes its last minibatch).")
  real_x, real_cond = split_batch(real_batch) if gan.g_loss_sees_real else (None, None)

  def loss_fn(g_params):
    fake, g_cols = apply_player(gan.generator, state.g, z, train=True,
                                rng=jax.random.fold_in(drop_key, 1), params=g_params, cond=cond)
    out, _ = apply_player(gan.discriminator, state.d, fake, train=True, rng=drop_key, cond=cond)
    real_out = None
    if real_x is not None:  # for a G loss that reads D's outputs on data: constants
      real_out, _ = apply_player(gan.discriminator, state.d, _real(real_x, fake, "real_batch"),
                                 train=True, rng=jax.random.fold_in(drop_key, 2), cond=real_cond)
      real_out = lax.stop_gradient(_flat(real_out))
    return _g_loss(gan, state, _flat(out), real_out, real_cond), g_cols

  (g_loss, g_cols), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g.params)
  state, norms = update_player(gan, state, "g", grads, g_cols, axis_name=axis_name,
                               kernels=kernels)
  return state, _pmean({"g_loss": g_loss, **norms}, axis_name)


def _simultaneous_grads(gan: GAN, state: GANState, real_batch: Batch, rng: jax.Array,
                        noise: jax.Array | None):
  """Both players' gradients from one minibatch and one G(z): (d_grads, g_grads, sample_ct,
  (d_cols, g_cols), metrics). sample_ct, dG_loss / dG(z), is G's read of D's weights."""
  x, cond = split_batch(real_batch)
  z_key, drop_key = jax.random.split(rng)
  real_key, fake_key = jax.random.split(drop_key)
  z = _noise(gan, z_key, x.shape[0], noise)
  g, d = state.g, state.d
  fake, g_vjp, g_cols = jax.vjp(
      lambda p: apply_player(gan.generator, g, z, train=True,
                             rng=jax.random.fold_in(drop_key, 1), params=p, cond=cond),
      g.params, has_aux=True)  # [m, ...]
  real = _real(x, fake, "real_batch")

  def d_apply(player, x, key, p):
    out, cols = apply_player(gan.discriminator, player, x, train=True, rng=key, params=p,
                             cond=cond)
    return _flat(out), cols

  real_out, real_vjp, d_cols = jax.vjp(lambda p: d_apply(d, real, real_key, p), d.params,
                                       has_aux=True)  # [m]
  fake_out, fake_vjp, d_cols = jax.vjp(
      lambda p, x: d_apply(d.replace(collections=d_cols), x, fake_key, p), d.params, fake,
      has_aux=True)  # [m]
  d_loss, (real_ct, fake_ct) = jax.value_and_grad(
      lambda r, f: _d_loss(gan, state, r, f, cond), argnums=(0, 1))(real_out, fake_out)
  g_loss, g_ct = jax.value_and_grad(
      lambda f: _g_loss(gan, state, f, lax.stop_gradient(real_out), cond))(fake_out)
  (d_grads_real,) = real_vjp(real_ct)
  d_grads = jax.tree.map(jnp.add, d_grads_real, fake_vjp(fake_ct)[0])
  metrics = {**_d_metrics(gan, real_out, fake_out, d_loss), "g_loss": g_loss}
  if gan.d_regularizer is not None:
    reg_key = jax.random.fold_in(drop_key, 2)
    reg, reg_grads = jax.value_and_grad(lambda p: gan.d_regularizer(
        _d_fn(gan, d, p, reg_key, cond), real, lax.stop_gradient(fake),
        jax.random.fold_in(reg_key, 1)))(d.params)
    d_grads = jax.tree.map(jnp.add, d_grads, reg_grads)
    metrics["d_reg"] = reg
  _, sample_ct = fake_vjp(g_ct)  # [m, ...]
  (g_grads,) = g_vjp(sample_ct)
  return d_grads, g_grads, sample_ct, (d_cols, g_cols), metrics


def simultaneous_step(gan: GAN, state: GANState, real_batch: Batch, rng: jax.Array, *,
                      axis_name: str | None = None, noise: jax.Array | None = None,
                      kernels: str = "plain") -> tuple[GANState, Metrics]:
  """Both players' gradients from one minibatch and the same samples, applied together.

  The authors' MNIST update: G(z) once, D once on the real and once on the generated
  half (dropout in both; the halves apart, so that G's backward pass touches only the
  generated rows), D's loss differentiated w.r.t. D's params and G's loss w.r.t. the
  samples of the same forward pass, then both optimizers applied and the EMA updated.
  Both players' collections take this step's updates (D's from the real, then the
  generated pass). ``state.step`` is not advanced.
  """
  check_key(rng, "simultaneous_step's rng")
  gan, k = _bound(gan, kernels, axis_name), kernels_lib.get(kernels)
  d_grads, g_grads, sample_ct, (d_cols, g_cols), metrics = _simultaneous_grads(
      gan, state, real_batch, rng, noise)
  d_grads, g_grads = _pmean((d_grads, g_grads), axis_name)
  if gan.grad_norms:
    norms_of = k.join_updates((gan.discriminator, gan.generator), (d_grads, g_grads))
    metrics["d_grad_norm"], metrics["g_grad_norm"] = map(k.global_norm, norms_of)
  d_grads = k.join_updates(gan.discriminator, d_grads, sample_ct)
  g_grads = k.join_updates(gan.generator, g_grads)
  new_d = _update(gan.d_optimizer, d_grads, state.d, _pmean_floats(d_cols, axis_name))
  new_g = _update(gan.g_optimizer, g_grads, state.g, _pmean_floats(g_cols, axis_name))
  return (state.replace(d=new_d, g=new_g, ema_params=ema_update(gan, state, new_g.params)),
          _pmean(metrics, axis_name))


def train_step(gan: GAN, state: GANState, real_batches: Batch, rng: jax.Array, *,
               axis_name: str | None = None, noise: jax.Array | None = None,
               kernels: str = "plain") -> tuple[GANState, Metrics]:
  """One training iteration; advances ``state.step`` by one.

  Args:
    gan: the spec; ``gan.update_rule`` picks the mode.
    state: current state.
    real_batches: ``[gan.real_batches_per_step, m, ...]``: k minibatches for the
      alternating mode (one per D step), one for the simultaneous mode; or a pair
      ``(xs, conds)`` of such arrays for a conditional GAN (the G step's samples take
      the last minibatch's conditions).
    rng: PRNG key for noise and dropout.
    axis_name: data-parallel axis to average over, or None.
    noise: optional ``[gan.noise_batches_per_step, m, latent]``: for the
      alternating mode the k D steps' noise then the G step's; otherwise drawn
      from ``rng``.
    kernels: "plain" or "cpu" (``gan_jax.kernels``).

  Returns:
    The new state and the metrics of both players (D's from its last step):
    ``d_loss, g_loss, value, d_real, d_fake``, ``d_grad_norm, g_grad_norm`` (with
    ``gan.grad_norms``) and ``d_reg`` (with a regulariser).
  """
  check_key(rng, "train_step's rng")
  expected = gan.real_batches_per_step
  xs, conds = split_batch(real_batches, "real_batches")
  if xs.ndim < 2:
    raise ValueError(f"real_batches has shape {tuple(xs.shape)}; train_step takes "
                     f"[{expected}, m, ...]: {expected} minibatch(es) of m examples.")
  if xs.shape[0] != expected:
    raise ValueError(f"real_batches has leading axis {xs.shape[0]}; this GAN "
                     f"(update_rule={gan.update_rule!r}, k={gan.k}) needs {expected}.")
  batch = lambda j: xs[j] if conds is None else (xs[j], conds[j])  # noqa: E731
  kw: dict[str, Any] = dict(axis_name=axis_name, kernels=kernels)
  nz = (lambda j: None) if noise is None else (lambda j: noise[j])
  if gan.update_rule == "simultaneous":
    state, metrics = simultaneous_step(gan, state, batch(0), rng, noise=nz(0), **kw)
  else:
    d_metrics = {}
    for j in range(gan.k):
      state, d_metrics = d_step(gan, state, batch(j), jax.random.fold_in(rng, j),
                                noise=nz(j), **kw)
    state, g_metrics = g_step(gan, state, jax.random.fold_in(rng, gan.k), xs.shape[1],
                              noise=nz(gan.k), cond=None if conds is None else conds[-1],
                              real_batch=batch(gan.k - 1) if gan.g_loss_sees_real else None,
                              **kw)
    metrics = {**d_metrics, **g_metrics}
  return state.replace(step=state.step + 1), metrics
