"""Semi-supervised MNIST by feature matching (Salimans et al. 2016, section 5), through the
library's steps with a D and losses of this module's own.

  python -m projects.mnist_semisupervised.feature_matching --workdir=runs/fm_100 \
      [--labels=100] [--seed=0] [--steps=30000] [--manual_dir=/path/to/mnist]

Trains on MNIST's 50,000 training images, ``--labels`` of them labelled (a balanced draw
by ``--seed``, which also seeds training), prints D's error on the 10,000 validation
images as it goes, and scores the final D once on the 10,000 test images (no model is
selected: choosing among checkpoints on the validation labels would use 100 times the
labels the result is about). Writes results.json, samples.png and d_params.msgpack.

D has K = 10 class logits; the fake class's logit is fixed at 0, so D's real-against-fake
logit is logsumexp of the 10 (``ssl_d_loss``). D's loss: cross-entropy on the labelled rows
of each minibatch (label >= 0) plus the paper's BCE of that logit, the unlabelled rows
against G's samples. G's loss: the squared distance between D's mean last-hidden features
on the unlabelled rows and on its samples (``feature_matching``). Players after the
authors' MNIST code: D 784-1000-500-250-250-250-10 ReLU, weight-normalised with scales
fixed by a data-dependent initialisation (the logits' trained), Gaussian noise in training
(0.3 on the pixels, 0.5 on each hidden layer's output); G 100-500-500-784, softplus with
batch normalisation, a weight-normalised sigmoid output; Adam (lr 0.003, b1 0.5), the rate
falling linearly to 0 over the last third; each minibatch 100 labelled rows (the labelled
draw, a fresh order per pass) and 100 rows of the whole training split with their labels
hidden (-1). The D scored is the moving average of D's parameters (0.999 per step).

The library gives the rest: ``GAN`` with the two losses, the alternating steps (one D
update, then one G update on fresh noise), ``TrainLoop`` with ``LabelledMix`` drawing the
minibatches on device. ``run.py`` of this project measures linear probes on a trained
run's features; this module trains D as the classifier.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gan_jax import losses
from gan_jax.errors import UserError, exit_on_user_error
from gan_jax.loop import TrainLoop, permute_index
from gan_jax.run import pictures
from gan_jax.run.experiment import generate, write_json
from gan_jax.state import GAN, init_state, sample_latent
from projects.mnist import data as data_lib
from projects.mnist_semisupervised import probe as probe_lib

NUM_CLASSES = 10
UNLABELLED = -1  # the label of a row whose label is hidden


def gaussian_noise(x: jax.Array, std: float, module: nn.Module, train: bool) -> jax.Array:
  if not train or std == 0.0:
    return x
  return x + std * jax.random.normal(module.make_rng("dropout"), x.shape, x.dtype)


class WeightNormDense(nn.Module):
  """x @ (v / ||v||) * scale + bias, the norm per output unit (weight normalisation). The
  scale is trained only with ``train_scale``; otherwise it stays where ``init_from_data`` set
  it, so that D cannot inflate its features (which G's feature matching would chase).
  Written here because flax's ``nn.WeightNorm`` always trains its scale."""

  features: int
  train_scale: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    v = self.param("direction", nn.initializers.normal(0.1), (x.shape[-1], self.features))
    scale = self.param("scale", nn.initializers.ones, (self.features,))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    t = x @ (v / jnp.linalg.norm(v, axis=0))
    self.sow("intermediates", "normalized", t)
    return t * (scale if self.train_scale else jax.lax.stop_gradient(scale)) + bias


class SemiSupervisedD(nn.Module):
  """x [B, 784] -> {"logits": [B, K], "features": [B, last hidden]}."""

  hidden: Sequence[int] = (1000, 500, 250, 250, 250)
  input_noise: float = 0.3
  hidden_noise: float = 0.5
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, x: jax.Array, *, cond: Any = None, train: bool = False) -> dict:
    del cond  # the labels are the loss's (ssl_d_loss), not an input
    h = gaussian_noise(x, self.input_noise, self, train)
    features = h
    for width in self.hidden:
      features = nn.relu(WeightNormDense(width)(h))
      h = gaussian_noise(features, self.hidden_noise, self, train)
    logits = WeightNormDense(self.num_classes, train_scale=True)(h)
    return {"logits": logits, "features": features}


def init_from_data(module: nn.Module, params: Any, x: jax.Array, rng: jax.Array) -> Any:
  """Data-dependent initialisation of each ``WeightNormDense`` in turn: its scale and bias
  set so that its outputs on ``x`` (in training mode) have mean 0 and variance 1."""
  params = jax.tree.map(jnp.asarray, params)
  for name in sorted((n for n in params if n.startswith("WeightNormDense_")),
                     key=lambda n: int(n.rsplit("_", 1)[1])):
    _, sown = module.apply({"params": params}, x, train=True, rngs={"dropout": rng},
                           mutable=["intermediates"])
    t = sown["intermediates"][name]["normalized"][0]
    mean, std = jnp.mean(t, 0), jnp.std(t, 0) + 1e-6
    params = {**params, name: {**params[name], "scale": 1.0 / std, "bias": -mean / std}}
  return params


class BatchNormGenerator(nn.Module):
  """z [B, latent] -> pixels [B, 784] in (0, 1)."""

  hidden: Sequence[int] = (500, 500)
  output_dim: int = 784

  @nn.compact
  def __call__(self, z: jax.Array, *, cond: Any = None, train: bool = False) -> jax.Array:
    del cond
    h = z
    for width in self.hidden:
      h = nn.Dense(width, use_bias=False)(h)
      h = nn.softplus(nn.BatchNorm(use_running_average=not train, momentum=0.9)(h))
    return nn.sigmoid(nn.WeightNorm(nn.Dense(self.output_dim))(h))


def real_logit(out: dict) -> jax.Array:
  """D's real-against-fake logit: log sum_k exp(l_k) against the fake class's 0."""
  return jax.nn.logsumexp(out["logits"], axis=-1)


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  mask = mask.reshape(mask.shape + (1,) * (x.ndim - 1)).astype(x.dtype)
  return jnp.sum(x * mask, 0) / jnp.maximum(jnp.sum(mask), 1.0)


def ssl_d_loss(real_out: dict, fake_out: dict, *, real_label: jax.Array,
               cond: jax.Array) -> jax.Array:
  """Cross-entropy of the labelled rows (``cond`` >= 0), plus the paper's BCE of the
  real-against-fake logit: the unlabelled rows (-1) against the samples."""
  logp = jax.nn.log_softmax(real_out["logits"])
  labelled = cond >= 0
  picked = jnp.take_along_axis(logp, jnp.maximum(cond, 0)[:, None], axis=1)[:, 0]
  real = losses.binary_cross_entropy(real_logit(real_out), real_label)
  fake = losses.binary_cross_entropy(real_logit(fake_out), 0.0)
  return (-_masked_mean(picked, labelled) +
          0.5 * (_masked_mean(real, ~labelled) + jnp.mean(fake)))


def feature_matching(fake_out: dict, *, real_out: dict, cond: jax.Array) -> jax.Array:
  """Mean over features of (mean_x f(x) - mean_z f(G(z)))^2, f: D's last hidden layer, x
  the unlabelled rows of the minibatch (the labelled draw, in every minibatch, would pull
  G towards its 100 images)."""
  real = _masked_mean(real_out["features"], cond < 0)
  return jnp.mean(jnp.square(real - jnp.mean(fake_out["features"], 0)))


class ParamAverage(NamedTuple):
  average: Any


def average_params(decay: float) -> optax.GradientTransformation:
  """Leaves the updates as they are and keeps, in its state, the exponential moving average
  of the parameters after each update (``decay`` per update), the D that is scored."""

  def init(params):
    return ParamAverage(jax.tree.map(jnp.asarray, params))

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("average_params needs the parameters: optimizer.update(g, s, params).")
    new = optax.apply_updates(params, updates)
    return updates, ParamAverage(optax.incremental_update(new, state.average, 1.0 - decay))
  return optax.GradientTransformation(init, update)


def averaged_d(state: Any) -> Any:
  """D's averaged parameters, from its optimizer's state (``make_gan``'s chain)."""
  return state.d.opt_state[1].average


def make_gan(learning_rate: float | optax.Schedule = 0.003, latent_dim: int = 100,
             d_average: float = 0.999) -> GAN:
  adam = optax.adam(learning_rate, b1=0.5)
  return GAN(generator=BatchNormGenerator(), discriminator=SemiSupervisedD(),
             g_optimizer=adam, d_optimizer=optax.chain(adam, average_params(d_average)),
             latent_dim=latent_dim,
             latent_dist="uniform", d_loss=ssl_d_loss, g_loss=feature_matching,
             update_rule="alternating", k=1, grad_norms=False)


@dataclasses.dataclass(frozen=True)
class LabelledMix:
  """A ``gan_jax.loop.Source`` over ``(images [N, F], labels [N])``: each global minibatch is
  ``labelled`` rows drawn from the examples ``labelled_index`` (every one once per pass, a
  fresh order each pass), then the rest from all N (a fresh order each epoch), their labels
  replaced by -1."""

  num_examples: int
  labelled_index: tuple[int, ...]
  labelled: int

  def sample(self, data, key, batch_index, offset, count, global_batch):
    unlabelled = global_batch - self.labelled
    seed_l, seed_u = (jax.random.bits(jax.random.fold_in(key, i), (), jnp.uint32)
                      for i in range(2))
    row = offset + jnp.arange(count, dtype=jnp.int32)
    n_l = len(self.labelled_index)
    pos_l = batch_index * self.labelled + jnp.minimum(row, self.labelled - 1)
    pos_u = batch_index * unlabelled + jnp.maximum(row - self.labelled, 0)
    pick_l = jnp.asarray(self.labelled_index, jnp.int32)[
        permute_index(seed_l, pos_l // n_l, pos_l % n_l, n_l)]
    pick_u = permute_index(seed_u, pos_u // self.num_examples, pos_u % self.num_examples,
                           self.num_examples)
    is_l = row < self.labelled
    images, labels = data  # uint8 pixels, read as [0, 1]
    idx = jnp.where(is_l, pick_l, pick_u)
    x = jnp.take(images, idx, axis=0).astype(jnp.float32) * (1.0 / 255.0)
    return x, jnp.where(is_l, jnp.take(labels, idx), UNLABELLED)


@functools.partial(jax.jit, static_argnums=0)
def _predict(gan_d: nn.Module, d_params: Any, x: jax.Array) -> jax.Array:
  return jnp.argmax(gan_d.apply({"params": d_params}, x)["logits"], -1)


def classify(gan: GAN, d_params: Any, images: np.ndarray, batch: int = 5_000) -> np.ndarray:
  """D's predicted digit (inference mode: no noise) for uint8 images ``[n, 784]``."""
  x = np.asarray(images, np.float32) / 255.0
  return np.concatenate([np.asarray(_predict(gan.discriminator, d_params, x[i:i + batch]))
                         for i in range(0, len(x), batch)])


def error(gan: GAN, d_params: Any, images: np.ndarray, labels: np.ndarray) -> float:
  """The share of ``images`` whose predicted digit is not their label."""
  return float(np.mean(classify(gan, d_params, images) != np.asarray(labels)))


def learning_rate(base: float, steps: int, decay_from: float) -> optax.Schedule:
  """``base`` to step ``decay_from * steps``, then linearly to 0 at ``steps``."""
  start = int(decay_from * steps)
  return optax.join_schedules([optax.constant_schedule(base),
                               optax.linear_schedule(base, 0.0, max(steps - start, 1))],
                              [start])


def _args(argv: list[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--labels", type=int, default=100, help="labelled training images")
  p.add_argument("--seed", type=int, default=0, help="the labels' draw and training's seed")
  p.add_argument("--steps", type=int, default=30_000)
  p.add_argument("--eval_every", type=int, default=500)
  p.add_argument("--learning_rate", type=float, default=0.003)
  p.add_argument("--decay_from", type=float, default=0.67,
                 help="the fraction of --steps after which the rate falls linearly to 0")
  p.add_argument("--labelled_per_batch", type=int, default=100)
  p.add_argument("--unlabelled_per_batch", type=int, default=100)
  p.add_argument("--manual_dir", default="")
  p.add_argument("--data_dir", default="")
  args = p.parse_args(argv)
  if args.steps < 1 or args.eval_every < 1 or args.steps % args.eval_every:
    raise UserError(f"--steps={args.steps} and --eval_every={args.eval_every}: give positive "
                    f"numbers, --eval_every dividing --steps (e.g. --steps=30000 "
                    f"--eval_every=500).")
  if min(args.labelled_per_batch, args.unlabelled_per_batch) < 1:
    raise UserError("--labelled_per_batch and --unlabelled_per_batch must be >= 1.")
  return args


def train(args: argparse.Namespace, dataset, index: np.ndarray,
          report=print) -> tuple[GAN, Any, list[dict[str, float]]]:
  """The run: (gan, final state, one row per --eval_every steps)."""
  gan = make_gan(learning_rate(args.learning_rate, args.steps, args.decay_from))
  source = LabelledMix(len(dataset.train), tuple(int(i) for i in index),
                       args.labelled_per_batch)
  batch = args.labelled_per_batch + args.unlabelled_per_batch
  loop = TrainLoop(gan, source, global_batch=batch, steps_per_call=args.eval_every,
                   parallel="none")
  key = jax.random.key(args.seed)
  labels = np.full(len(dataset.train), UNLABELLED, np.int32)  # only the drawn labels exist
  labels[index] = dataset.train_labels[index]
  example = (np.asarray(dataset.train[:2], np.float32) / 255.0, labels[:2])
  state = init_state(gan, jax.random.fold_in(key, 0), example)
  d_params = init_from_data(gan.discriminator, state.d.params,
                            np.asarray(dataset.train[:500], np.float32) / 255.0,
                            jax.random.fold_in(key, 2))
  state = state.replace(d=state.d.replace(params=d_params,
                                          opt_state=gan.d_optimizer.init(d_params)))
  dstate = loop.put_state(state)
  ddata = loop.put_data((dataset.train, labels))
  rows, start = [], time.time()
  for _ in range(args.steps // args.eval_every):
    dstate, metrics = loop(dstate, ddata, jax.random.fold_in(key, 1))
    state = loop.get_state(dstate)
    val = error(gan, averaged_d(state), dataset.validation, dataset.validation_labels)
    raw = error(gan, state.d.params, dataset.validation, dataset.validation_labels)
    rows.append({"step": int(state.step), "seconds": round(time.time() - start, 1),
                 "d_loss": float(np.mean(metrics["d_loss"])),
                 "g_loss": float(np.mean(metrics["g_loss"])), "val_error": val,
                 "val_error_raw_d": raw})
    report(f"step {rows[-1]['step']}/{args.steps}  {rows[-1]['seconds']:.0f} s  D loss "
           f"{rows[-1]['d_loss']:.4f}  G loss {rows[-1]['g_loss']:.5f}  validation error "
           f"{100 * val:.2f}% (raw D {100 * raw:.2f}%)")
    if not np.isfinite(rows[-1]["d_loss"] + rows[-1]["g_loss"]):
      raise UserError(f"The losses became {rows[-1]['d_loss']}, {rows[-1]['g_loss']} by step "
                      f"{rows[-1]['step']}: training diverged. Lower --learning_rate.")
  return gan, loop.get_state(dstate), rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = _args(argv)
  dataset = data_lib.load_mnist(manual_dir=args.manual_dir, data_dir=args.data_dir)
  index = probe_lib.balanced_draw(dataset.train_labels, args.labels, args.seed,
                                  flag="--labels")
  os.makedirs(args.workdir, exist_ok=True)
  print(f"Feature matching with {args.labels} labels (seed {args.seed}), {args.steps} "
        f"steps.", flush=True)
  gan, state, rows = train(args, dataset, index, report=lambda s: print(s, flush=True))
  test = error(gan, averaged_d(state), dataset.test, dataset.test_labels)  # scored once
  z = sample_latent(gan, jax.random.key(args.seed + 1), (100,))
  pictures.save_png(os.path.join(args.workdir, "samples.png"), pictures.image_grid(
      generate(gan, state, z, ema=False), dataset.image_shape, rows=10, cols=10))
  with open(os.path.join(args.workdir, "d_params.msgpack"), "wb") as f:
    f.write(flax.serialization.to_bytes(averaged_d(state)))
  results = {**vars(args), "labelled_index": [int(i) for i in index], "rows": rows,
             "val_error": rows[-1]["val_error"], "test_error": test,
             "seconds": rows[-1]["seconds"]}
  write_json(os.path.join(args.workdir, "results.json"), results)
  print(f"Final D: validation error {100 * rows[-1]['val_error']:.2f}%, test error "
        f"{100 * test:.2f}% ({args.labels} labels, seed {args.seed}, "
        f"{rows[-1]['seconds']:.0f} s of training).", flush=True)
  return results


if __name__ == "__main__":
  exit_on_user_error(main)
