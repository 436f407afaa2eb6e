"""Pure training steps: one D update, one G update, one full iteration.

Every function takes the static ``GAN`` spec first and returns ``(new_state,
metrics)``. With ``axis_name`` set (inside ``jax.pmap`` or ``jax.shard_map``),
gradients and metrics are averaged over that axis with ``lax.pmean``, so each
replica applies the same update; with ``axis_name=None`` there is no collective.
Metrics are float32 scalars.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from gan_jax import losses
from gan_jax.state import GAN, GANState, sample_latent

Metrics = dict[str, jax.Array]
Batch = jax.Array
PyTree = Any


def _pmean(tree: PyTree, axis_name: str | None) -> PyTree:
  return tree if axis_name is None else lax.pmean(tree, axis_name)


def _generate(gan: GAN, g_params, z: jax.Array) -> jax.Array:
  return gan.generator.apply({"params": g_params}, z)


def _discriminate(gan: GAN, d_params, x: jax.Array, rng: jax.Array) -> jax.Array:
  return gan.discriminator.apply({"params": d_params}, x, train=True, rngs={"dropout": rng})


def _noise(gan: GAN, rng: jax.Array, batch_size: int, noise: jax.Array | None) -> jax.Array:
  return sample_latent(gan, rng, (batch_size,)) if noise is None else noise


def _apply(opt: optax.GradientTransformation, grads, opt_state, params):
  updates, opt_state = opt.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def _d_metrics(gan: GAN, real_logits, fake_logits, d_loss, d_grads) -> Metrics:
  return {
      "d_loss": d_loss,
      "value": losses.value_function(real_logits, fake_logits),
      "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
      "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
      "d_grad_norm": optax.tree.norm(d_grads),
  }


def d_step(gan: GAN, state: GANState, real_batch: Batch, rng: jax.Array, *,
           axis_name: str | None = None, noise: jax.Array | None = None
           ) -> tuple[GANState, Metrics]:
  """One discriminator update (Algorithm 1, inner loop).

  Draws m = len(real_batch) noise vectors (or uses ``noise``, [m, latent]),
  runs D once on the joint batch [real; G(z)] with dropout, and descends D's
  loss. G's parameters are untouched; ``state.step`` is not advanced.

  Returns:
    The new state and metrics ``d_loss``, ``value`` (V estimate), ``d_real``
    (mean D(x)), ``d_fake`` (mean D(G(z))), ``d_grad_norm``.
  """
  z_key, drop_key = jax.random.split(rng)
  m = real_batch.shape[0]
  fake = _generate(gan, state.g_params, _noise(gan, z_key, m, noise))  # [m, F]
  joint = jnp.concatenate([real_batch.astype(fake.dtype), fake], axis=0)  # [2m, F]

  def loss_fn(d_params):
    logits = _discriminate(gan, d_params, joint, drop_key)  # [2m]
    real_logits, fake_logits = logits[:m], logits[m:]
    loss = losses.discriminator_loss(real_logits, fake_logits, real_label=gan.real_label)
    return loss, (real_logits, fake_logits)

  (d_loss, (real_logits, fake_logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.d_params)
  grads = _pmean(grads, axis_name)
  d_params, d_opt_state = _apply(gan.d_optimizer, grads, state.d_opt_state, state.d_params)
  metrics = _pmean(_d_metrics(gan, real_logits, fake_logits, d_loss, grads), axis_name)
  return state.replace(d_params=d_params, d_opt_state=d_opt_state), metrics


def g_step(gan: GAN, state: GANState, rng: jax.Array, batch_size: int, *,
           axis_name: str | None = None, noise: jax.Array | None = None
           ) -> tuple[GANState, Metrics]:
  """One generator update on fresh noise (Algorithm 1, outer step).

  Draws ``batch_size`` noise vectors (or uses ``noise``), scores G(z) with D
  (dropout on, as the authors trained), and descends ``gan.g_loss``. D's
  parameters are untouched; ``state.step`` is not advanced.

  Returns:
    The new state and metrics ``g_loss``, ``g_grad_norm``.
  """
  z_key, drop_key = jax.random.split(rng)
  z = _noise(gan, z_key, batch_size, noise)

  def loss_fn(g_params):
    logits = _discriminate(gan, state.d_params, _generate(gan, g_params, z), drop_key)
    return losses.generator_loss(logits, kind=gan.g_loss)

  g_loss, grads = jax.value_and_grad(loss_fn)(state.g_params)
  grads = _pmean(grads, axis_name)
  g_params, g_opt_state = _apply(gan.g_optimizer, grads, state.g_opt_state, state.g_params)
  metrics = _pmean({"g_loss": g_loss, "g_grad_norm": optax.tree.norm(grads)}, axis_name)
  return state.replace(g_params=g_params, g_opt_state=g_opt_state), metrics


def simultaneous_step(gan: GAN, state: GANState, real_batch: Batch, rng: jax.Array, *,
                      axis_name: str | None = None, noise: jax.Array | None = None
                      ) -> tuple[GANState, Metrics]:
  """Both players' gradients from one minibatch and the same samples, applied together.

  The authors' MNIST update: G(z) once, D once on the real and once on the
  generated half (dropout in both), D's loss differentiated w.r.t. D's params
  and G's loss w.r.t. the samples from the same forward pass, then both
  optimizers applied. ``state.step`` is not advanced.

  The two halves go through D as separate passes so that the backward pass for
  G's loss touches only the generated rows (the joint-batch form spends ~8% more
  FLOPs on input gradients of real data that nothing uses).
  """
  z_key, drop_key = jax.random.split(rng)
  real_key, fake_key = jax.random.split(drop_key)
  m = real_batch.shape[0]
  z = _noise(gan, z_key, m, noise)
  fake, g_vjp = jax.vjp(lambda p: _generate(gan, p, z), state.g_params)  # [m, F]
  real = real_batch.astype(fake.dtype)
  real_logits, real_vjp = jax.vjp(lambda p: _discriminate(gan, p, real, real_key),
                                  state.d_params)  # [m]
  fake_logits, fake_vjp = jax.vjp(lambda p, x: _discriminate(gan, p, x, fake_key),
                                  state.d_params, fake)  # [m]

  d_loss, (real_ct, fake_ct) = jax.value_and_grad(
      lambda r, f: losses.discriminator_loss(r, f, real_label=gan.real_label),
      argnums=(0, 1))(real_logits, fake_logits)
  g_loss, g_ct = jax.value_and_grad(
      lambda f: losses.generator_loss(f, kind=gan.g_loss))(fake_logits)
  (d_grads_real,) = real_vjp(real_ct)
  d_grads_fake, _ = fake_vjp(fake_ct)
  d_grads = jax.tree.map(jnp.add, d_grads_real, d_grads_fake)
  _, sample_ct = fake_vjp(g_ct)  # dG_loss / dG(z): [m, F]
  (g_grads,) = g_vjp(sample_ct)
  d_grads, g_grads = _pmean((d_grads, g_grads), axis_name)

  d_params, d_opt_state = _apply(gan.d_optimizer, d_grads, state.d_opt_state, state.d_params)
  g_params, g_opt_state = _apply(gan.g_optimizer, g_grads, state.g_opt_state, state.g_params)
  metrics = _d_metrics(gan, real_logits, fake_logits, d_loss, d_grads)
  metrics.update(g_loss=g_loss, g_grad_norm=optax.tree.norm(g_grads))
  metrics = _pmean(metrics, axis_name)
  return state.replace(d_params=d_params, d_opt_state=d_opt_state,
                       g_params=g_params, g_opt_state=g_opt_state), metrics


def train_step(gan: GAN, state: GANState, real_batches: Batch, rng: jax.Array, *,
               axis_name: str | None = None, noise: jax.Array | None = None
               ) -> tuple[GANState, Metrics]:
  """One training iteration; advances ``state.step`` by one.

  Args:
    gan: the spec; ``gan.update_rule`` picks the mode.
    state: current state.
    real_batches: ``[gan.real_batches_per_step, m, F]``: k minibatches for the
      alternating mode (one per D step), one for the simultaneous mode.
    rng: PRNG key for noise and dropout.
    axis_name: data-parallel axis to average over, or None.
    noise: optional ``[gan.noise_batches_per_step, m, latent]``: for the
      alternating mode the k D steps' noise then the G step's; otherwise drawn
      from ``rng``.

  Returns:
    The new state and the metrics of both players (D's from its last step):
    ``d_loss, g_loss, value, d_real, d_fake, d_grad_norm, g_grad_norm``.
  """
  expected = gan.real_batches_per_step
  if real_batches.shape[0] != expected:
    raise ValueError(f"real_batches has leading axis {real_batches.shape[0]}; this GAN "
                     f"(update_rule={gan.update_rule!r}, k={gan.k}) needs {expected}.")
  nz = (lambda j: None) if noise is None else (lambda j: noise[j])
  if gan.update_rule == "simultaneous":
    state, metrics = simultaneous_step(gan, state, real_batches[0], rng,
                                       axis_name=axis_name, noise=nz(0))
  else:
    d_metrics = {}
    for j in range(gan.k):
      state, d_metrics = d_step(gan, state, real_batches[j], jax.random.fold_in(rng, j),
                                axis_name=axis_name, noise=nz(j))
    state, g_metrics = g_step(gan, state, jax.random.fold_in(rng, gan.k),
                              real_batches.shape[1], axis_name=axis_name, noise=nz(gan.k))
    metrics = {**d_metrics, **g_metrics}
  return state.replace(step=state.step + 1), metrics
