"""A small MNIST convnet whose penultimate features score generated digits.

Inception weights cannot be used for grey-scale 28x28 digits (nor downloaded
on offline machines), so the feature-space metrics (Fréchet distance,
classifier score, precision/recall, class coverage) use this network instead.
It is trained once, deterministically from its seed, and cached on disk with
its test accuracy:

  <cache_dir>/mnist_classifier_<fingerprint>/{params.msgpack, info.json}

The fingerprint covers the architecture, the training settings and the bytes
of the training images, so a changed setting or data set never loads a stale
network. The cache entry appears atomically (written to a temporary folder,
then renamed), so an interrupted training never leaves a half-written entry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gan_jax.errors import UserError
from gan_jax.run.preemption import raise_if_stopped

MIN_TEST_ACCURACY = 0.99


class MNISTClassifier(nn.Module):
  """Stride-2 5x5 convolutions (28 -> 14 -> 7), then dense features and 10 logits.

  Strided convolutions rather than pooling: on CPUs XLA's gradients of
  stride-1 convolutions and of max-pooling are several times slower.
  """

  channels: tuple[int, ...] = (32, 64)
  kernel: int = 5
  features: int = 256

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``x``: [N, 784] or [N, 28, 28, 1] in [0, 1]. Returns (features [N, F], logits [N, 10])."""
    x = x.reshape(x.shape[0], 28, 28, 1)
    for c in self.channels:
      x = nn.relu(nn.Conv(c, (self.kernel, self.kernel), strides=(2, 2))(x))
    x = nn.relu(nn.Dense(self.features)(x.reshape(x.shape[0], -1)))
    return x, nn.Dense(10)(x)


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """Everything that decides the trained classifier (all of it enters the fingerprint)."""

  seed: int = 0
  epochs: int = 3
  batch_size: int = 256
  learning_rate: float = 2e-3
  channels: tuple[int, ...] = (32, 64)
  kernel: int = 5
  features: int = 256
  shift: int = 2  # training images are translated by up to this many pixels each way

  def model(self) -> MNISTClassifier:
    return MNISTClassifier(channels=self.channels, kernel=self.kernel, features=self.features)


@dataclasses.dataclass(frozen=True)
class Classifier:
  """A trained classifier: its module, parameters and what is known of it."""

  module: MNISTClassifier
  params: Any
  info: dict
  entry: str = ""  # its cache folder ("" when it could not be cached)

  @property
  def test_accuracy(self) -> float:
    return float(self.info["test_accuracy"])

  def features_and_probs(self, images: np.ndarray, batch: int = 1000
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features [N, F] and class probabilities [N, 10] of images in [0, 1]."""
    feats, probs = [], []
    for i in range(0, len(images), batch):
      f, p = _features_and_probs(self.module, self.params,
                                 jnp.asarray(images[i:i + batch], jnp.float32))
      feats.append(np.asarray(f))
      probs.append(np.asarray(p))
    return np.concatenate(feats), np.concatenate(probs)


@functools.partial(jax.jit, static_argnums=0)
def _features_and_probs(module, params, x):
  f, logits = module.apply({"params": params}, x)
  return f, jax.nn.softmax(logits)


@functools.partial(jax.jit, static_argnums=0)
def _predict(module, params, x):
  return jnp.argmax(module.apply({"params": params}, x)[1], axis=-1)


def accuracy(module: MNISTClassifier, params: Any, images: np.ndarray, labels: np.ndarray,
             batch: int = 1000) -> float:
  preds = np.concatenate([np.asarray(_predict(module, params,
                                              jnp.asarray(images[i:i + batch], jnp.float32)))
                          for i in range(0, len(images), batch)])
  return float(np.mean(preds == labels))


def train(settings: TrainSettings, images: np.ndarray, labels: np.ndarray, *,
          verbose: bool = False) -> Any:
  """Train on uint8 ``images`` [N, 784] (scaled to [0, 1]) and int ``labels`` [N].

  Adam with a cosine-decayed learning rate on the cross-entropy, images shifted
  at random by up to ``settings.shift`` pixels; each epoch a fresh permutation
  from the seed. Deterministic given ``settings`` and the data.
  The steps are separate jitted calls rather than one ``lax.scan``: XLA's CPU
  backend runs convolutions inside a loop body about ten times slower.
  """
  module = settings.model()
  key = jax.random.key(settings.seed)
  params = module.init(jax.random.fold_in(key, 0), jnp.zeros((1, 784)))["params"]
  steps_per_epoch = len(images) // settings.batch_size
  tx = optax.adam(optax.cosine_decay_schedule(settings.learning_rate,
                                              settings.epochs * steps_per_epoch))
  opt_state = tx.init(params)
  x_all = jnp.asarray(images)
  y_all = jnp.asarray(labels, jnp.int32)

  def loss_fn(p, x, y):
    logits = module.apply({"params": p}, x)[1]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def translate(x, k):  # random shifts of up to settings.shift pixels, zero fill
    r = settings.shift
    imgs = jnp.pad(x.reshape(-1, 28, 28), ((0, 0), (r, r), (r, r)))
    offsets = jax.random.randint(k, (len(x), 2), 0, 2 * r + 1)
    def crop(img, o):
      return jax.lax.dynamic_slice(img, (o[0], o[1]), (28, 28))
    return jax.vmap(crop)(imgs, offsets).reshape(len(x), -1)

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, idx, k):
    x = x_all[idx].astype(jnp.float32) / 255.0
    if settings.shift:
      x = translate(x, k)
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y_all[idx])
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  for e in range(settings.epochs):
    t0 = time.time()
    order = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, 1), e), len(images))
    order = order[:steps_per_epoch * settings.batch_size].reshape(steps_per_epoch, -1)
    shift_keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, 2), e),
                                  steps_per_epoch)
    losses = []
    for i in range(steps_per_epoch):
      raise_if_stopped()  # a stop signal whose exception a library (JAX's cache writer) caught
      params, opt_state, loss = step(params, opt_state, order[i], shift_keys[i])
      losses.append(loss)
    if verbose:
      print(f"classifier epoch {e + 1}/{settings.epochs}: loss "
            f"{float(jnp.mean(jnp.stack(losses))):.4f} ({time.time() - t0:.0f} s)", flush=True)
  return params


def default_cache_dir() -> str:
  return os.environ.get("GAN_JAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                         "gan_jax")


def fingerprint(settings: TrainSettings, images: np.ndarray, labels: np.ndarray) -> str:
  h = hashlib.sha256(json.dumps(dataclasses.asdict(settings), sort_keys=True).encode())
  h.update(np.ascontiguousarray(images).tobytes())
  h.update(np.ascontiguousarray(labels).astype(np.int64).tobytes())
  return h.hexdigest()[:16]


def _entry_dir(cache_dir: str, fp: str) -> str:
  return os.path.join(cache_dir, f"mnist_classifier_{fp}")


def _load_verified(module: MNISTClassifier, entry: str, dataset) -> Classifier:
  """A cache entry, checked before any use: its parameters' bytes against the SHA-256 that
  info.json records (entries without one: the test accuracy, recomputed, against the
  recorded one). ``ValueError`` when it differs, ``OSError`` when it cannot be read."""
  with open(os.path.join(entry, "info.json")) as f:
    info = json.load(f)
  with open(os.path.join(entry, "params.msgpack"), "rb") as f:
    raw = f.read()
  digest = info.get("params_sha256")
  if digest is not None and hashlib.sha256(raw).hexdigest() != digest:
    raise ValueError("its parameters do not match the SHA-256 recorded when it was cached")
  like = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 784)))["params"]
  params = jax.tree.map(jnp.asarray, flax.serialization.from_bytes(like, raw))
  if digest is None:
    acc = accuracy(module, params, dataset.test / 255.0, dataset.test_labels)
    if not abs(acc - float(info["test_accuracy"])) < 1e-6:
      raise ValueError(f"its test accuracy is {acc:.4f}, not the {info['test_accuracy']:.4f} "
                       f"recorded when it was cached")
  return Classifier(module, params, info, entry)


def _training_set(dataset) -> tuple[np.ndarray, np.ndarray]:
  return (np.concatenate([dataset.train, dataset.validation]),
          np.concatenate([dataset.train_labels, dataset.validation_labels]))


def is_cached(dataset, *, cache_dir: str = "", settings: TrainSettings = TrainSettings()) -> bool:
  """Whether the classifier for ``dataset`` is in the cache (not yet verified)."""
  fp = fingerprint(settings, *_training_set(dataset))
  return os.path.isdir(_entry_dir(cache_dir or default_cache_dir(), fp))


def load_or_train(dataset, *, cache_dir: str = "", settings: TrainSettings = TrainSettings(),
                  min_accuracy: float = MIN_TEST_ACCURACY, verbose: bool = True) -> Classifier:
  """The cached classifier for ``dataset`` (a ``projects.mnist.data.Dataset``), training it if
  needed.

  Trains on the train and validation splits, measures accuracy on the test split,
  and refuses (UserError) a network below ``min_accuracy``: features from a
  poor classifier would make every metric built on them misleading.
  """
  cache_dir = cache_dir or default_cache_dir()
  images, labels = _training_set(dataset)
  fp = fingerprint(settings, images, labels)
  entry = _entry_dir(cache_dir, fp)
  module = settings.model()
  if os.path.isdir(entry):
    try:
      return _load_verified(module, entry, dataset)
    except (OSError, ValueError, KeyError) as e:
      aside = f"{entry}.damaged-{int(time.time())}"
      try:
        os.rename(entry, aside)
      except OSError as moved:
        raise UserError(
            f"The cached MNIST classifier in {entry} is damaged ({e}) and could not be moved "
            f"aside ({moved.strerror}). Delete that folder and run again: the classifier is "
            f"retrained and cached anew.") from e
      print(f"warning: the cached MNIST classifier in {entry} is damaged ({e}); it was moved "
            f"to {aside} and is trained again.", flush=True)

  if verbose:
    print(f"Training the MNIST feature classifier once (cached in {entry}) ...", flush=True)
  t0 = time.time()
  params = train(settings, images, labels, verbose=verbose)
  acc = accuracy(module, params, dataset.test / 255.0, dataset.test_labels)
  info = {"test_accuracy": acc, "train_seconds": time.time() - t0, "fingerprint": fp,
          "num_train": int(len(images)), **dataclasses.asdict(settings)}
  info = json.loads(json.dumps(info))  # as it will read back from info.json
  if verbose:
    print(f"MNIST feature classifier: test accuracy {acc:.4f} "
          f"({info['train_seconds']:.0f} s)", flush=True)
  if acc < min_accuracy:
    raise UserError(
        f"The MNIST feature classifier reached only {acc:.4f} test accuracy (at least "
        f"{min_accuracy} is required for trustworthy feature metrics); its settings were "
        f"{settings}. Train it longer (more epochs) or turn the feature metrics off with "
        f"--config.evaluation.classifier_metrics=False.")
  raw = flax.serialization.to_bytes(params)
  info["params_sha256"] = hashlib.sha256(raw).hexdigest()
  try:
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp_classifier_", dir=cache_dir)
    with open(os.path.join(tmp, "params.msgpack"), "wb") as f:
      f.write(raw)
    with open(os.path.join(tmp, "info.json"), "w") as f:
      json.dump(info, f, indent=2)
    try:
      os.rename(tmp, entry)  # atomic; loses harmlessly to a concurrent writer
    except OSError:
      shutil.rmtree(tmp, ignore_errors=True)
  except OSError as e:
    print(f"warning: the MNIST classifier could not be cached in {cache_dir} ({e.strerror}); "
          f"it will be trained again next time. Set GAN_JAX_CACHE to a writable folder.",
          flush=True)
    return Classifier(module, params, info)
  return Classifier(module, params, info, entry if os.path.isdir(entry) else "")


def cached(clf: Classifier, name: str, images: np.ndarray,
           compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """``compute()``'s arrays for real uint8 ``images``, kept in the classifier's cache folder
  under ``name`` and the images' SHA-256: the reference features every run start and
  --mode=eval need cost seconds each to recompute. Unreadable or unwritable: recomputed."""
  if not clf.entry:
    return compute()
  key = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:16]
  path = os.path.join(clf.entry, f"{name}_{key}.npz")
  try:
    with np.load(path) as f:
      return dict(f)
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
    pass
  arrays = compute()
  tmp = ""
  try:
    fd, tmp = tempfile.mkstemp(dir=clf.entry, prefix=".tmp_", suffix=".npz")
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)  # atomic: a reader sees no file or a whole one
  except OSError:
    with contextlib.suppress(OSError):
      if tmp:
        os.unlink(tmp)
  return arrays
