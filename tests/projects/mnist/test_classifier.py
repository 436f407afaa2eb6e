"""The MNIST feature classifier: accuracy, determinism, the disk cache, and the metrics'
sanity figures on real images."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from conftest import assert_trees_equal

from gan_jax.errors import UserError
from projects.mnist.metrics import classifier, features as metrics

# With pytest-xdist: on the same worker as test_launch, which uses the same trained classifier.
pytestmark = pytest.mark.xdist_group("mnist_classifier")


def test_classifier_reaches_99_percent_and_records_it(mnist, mnist_classifier):
  clf, cache = mnist_classifier
  assert clf.test_accuracy >= 0.99
  # Recorded on disk next to the weights, and true of the weights.
  (entry,) = [e for e in os.listdir(cache) if e.startswith("mnist_classifier_")]
  with open(os.path.join(cache, entry, "info.json")) as f:
    info = json.load(f)
  assert info["test_accuracy"] == clf.test_accuracy
  assert classifier.accuracy(clf.module, clf.params, mnist.test / 255.0,
                             mnist.test_labels) == clf.test_accuracy


def test_second_use_loads_the_cache_without_training(mnist, mnist_classifier, monkeypatch):
  clf, cache = mnist_classifier

  def no_training(*args, **kwargs):
    raise AssertionError("the cached classifier should have been loaded")

  monkeypatch.setattr(classifier, "train", no_training)
  again = classifier.load_or_train(mnist, cache_dir=cache, verbose=False)
  assert_trees_equal(again.params, clf.params)
  assert again.info == clf.info


def test_reference_features_are_cached_beside_the_classifier_and_recomputed_when_damaged(
    mnist, mnist_classifier):
  clf, _ = mnist_classifier
  calls = []

  def compute(images):
    calls.append(len(images))
    return {"features": clf.features_and_probs(images / 255.0)[0]}

  first, second = mnist.test[:20], mnist.test[20:50]
  a = classifier.cached(clf, "probe", first, lambda: compute(first))
  (path,) = [os.path.join(clf.entry, f) for f in os.listdir(clf.entry) if f.startswith("probe_")]
  again = classifier.cached(clf, "probe", first, lambda: compute(first))
  other = classifier.cached(clf, "probe", second, lambda: compute(second))
  assert calls == [20, 30]  # read back for the same images, computed for others
  np.testing.assert_array_equal(again["features"], a["features"])
  assert other["features"].shape == (30, a["features"].shape[1])
  with open(path, "r+b") as f:  # a damaged file: recomputed, never taken as good
    f.truncate(100)
  fixed = classifier.cached(clf, "probe", first, lambda: compute(first))
  assert calls == [20, 30, 20]
  np.testing.assert_array_equal(fixed["features"], a["features"])
  assert not [f for f in os.listdir(clf.entry) if f.startswith(".tmp_")]


def test_training_is_deterministic_from_the_seed_and_keyed_by_settings(mnist, tmp_path):
  small = classifier.TrainSettings(epochs=1, channels=(4, 8), features=16)
  images, labels = mnist.train[:1024], mnist.train_labels[:1024]
  a = classifier.train(small, images, labels)
  b = classifier.train(small, images, labels)
  assert_trees_equal(a, b)
  c = classifier.train(classifier.TrainSettings(epochs=1, channels=(4, 8), features=16, seed=1),
                       images, labels)
  assert not np.array_equal(jax.tree.leaves(a)[0], jax.tree.leaves(c)[0])
  fp = classifier.fingerprint(small, images, labels)
  assert fp == classifier.fingerprint(small, images.copy(), labels)
  assert fp != classifier.fingerprint(small, images[::-1], labels)
  assert fp != classifier.fingerprint(classifier.TrainSettings(epochs=2), images, labels)


def test_a_weak_classifier_is_refused_and_not_cached(mnist, tmp_path):
  weak = classifier.TrainSettings(epochs=1, channels=(2, 2), features=4)
  small = type(mnist)(**{**mnist.__dict__, "train": mnist.train[:256],
                         "train_labels": mnist.train_labels[:256],
                         "validation": mnist.validation[:256],
                         "validation_labels": mnist.validation_labels[:256]})
  with pytest.raises(UserError, match="test accuracy"):
    classifier.load_or_train(small, cache_dir=str(tmp_path), settings=weak, verbose=False)
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("damage", ["flipped", "truncated", "garbage", "legacy_overwritten"])
def test_a_damaged_cache_entry_is_moved_aside_and_trained_again(mnist, mnist_classifier,
                                                               tmp_path, monkeypatch, capsys,
                                                               damage):
  clf, cache = mnist_classifier
  (entry,) = [e for e in os.listdir(cache) if e.startswith("mnist_classifier_")]
  shutil.copytree(os.path.join(cache, entry), tmp_path / entry)
  params = tmp_path / entry / "params.msgpack"
  raw = bytearray(params.read_bytes())
  if damage == "truncated":
    raw = raw[:len(raw) // 2]
  elif damage == "garbage":
    raw = bytearray(b"\x00 not msgpack")
  elif damage == "flipped":  # one bit of a weight near the end of the file: the digest sees it
    raw[-100] ^= 0x40
  else:  # bytes of weights overwritten: what the classifier computes changes
    raw[-400:-300] = b"\x7f" * 100
  params.write_bytes(bytes(raw))
  if damage == "legacy_overwritten":  # an entry cached before digests were recorded
    info = json.loads((tmp_path / entry / "info.json").read_text())
    del info["params_sha256"]
    (tmp_path / entry / "info.json").write_text(json.dumps(info))
  monkeypatch.setattr(classifier, "train", lambda *a, **k: clf.params)  # a quick "retrain"
  again = classifier.load_or_train(mnist, cache_dir=str(tmp_path), verbose=False)
  assert_trees_equal(again.params, clf.params)
  out = capsys.readouterr().out
  assert f"the cached MNIST classifier in {tmp_path / entry} is damaged" in out
  assert len([e for e in os.listdir(tmp_path) if ".damaged-" in e]) == 1
  reloaded = classifier.load_or_train(mnist, cache_dir=str(tmp_path), verbose=False)
  assert_trees_equal(reloaded.params, clf.params)  # the new entry verifies


def test_an_intact_entry_without_a_digest_loads(mnist, mnist_classifier, tmp_path,
                                                monkeypatch):
  clf, cache = mnist_classifier
  (entry,) = [e for e in os.listdir(cache) if e.startswith("mnist_classifier_")]
  shutil.copytree(os.path.join(cache, entry), tmp_path / entry)
  info = json.loads((tmp_path / entry / "info.json").read_text())
  del info["params_sha256"]
  (tmp_path / entry / "info.json").write_text(json.dumps(info))

  def no_training(*args, **kwargs):
    raise AssertionError("the intact entry should have been loaded")

  monkeypatch.setattr(classifier, "train", no_training)
  assert_trees_equal(classifier.load_or_train(mnist, cache_dir=str(tmp_path),
                                              verbose=False).params, clf.params)


@pytest.fixture(scope="module")
def scorer(mnist, mnist_classifier):
  clf, _ = mnist_classifier
  return metrics.FeatureScorer(clf.features_and_probs, mnist.test / 255.0)


def test_real_train_images_score_like_the_test_set(mnist, scorer):
  """Train vs test images: Fréchet distance near 0, precision and recall near 1."""
  real = scorer(mnist.train[:10_000] / 255.0)
  scale = np.trace(scorer.ref_stats[1])  # the features' total variance
  assert real["frechet_distance"] < 0.01 * scale
  assert real["precision"] > 0.9 and real["recall"] > 0.9
  assert real["classifier_score"] > 9 and real["classes_covered"] == 10
  assert real["class_kl_to_uniform"] < 0.01
  # Blurred digits: further away, and fewer of the real images are recalled.
  imgs = mnist.train[:10_000].reshape(-1, 28, 28) / 255.0
  blurred = (imgs + np.roll(imgs, 1, 1) + np.roll(imgs, -1, 1) + np.roll(imgs, 1, 2)
             + np.roll(imgs, -1, 2)) / 5
  blur = scorer(blurred.reshape(-1, 784))
  assert blur["frechet_distance"] > 5 * real["frechet_distance"]
  assert blur["recall"] < real["recall"] - 0.2


def test_a_single_digit_generator_is_flagged_by_coverage(mnist, scorer):
  sevens = mnist.test[mnist.test_labels == 7] / 255.0
  res = scorer(sevens)
  assert res["classes_covered"] == 1
  assert res["class_kl_to_uniform"] > 0.9 * np.log(10)
  assert res["recall"] < 0.3 and res["classifier_score"] < 1.5


def test_without_a_cached_classifier_the_smoke_config_scores_parzen_only(
    mnist, mnist_classifier, tmp_path, monkeypatch, capsys):
  """The smoke config (train_classifier=False) trains no classifier on a fresh machine: it
  says so in one line, scores Parzen, and selects without the FD guard; with the classifier
  cached it scores the feature metrics too."""
  from benchmarks.common import load_config  # pylint: disable=import-outside-toplevel
  from projects.mnist import evaluate  # pylint: disable=import-outside-toplevel
  from projects.mnist.experiment import MNIST  # pylint: disable=import-outside-toplevel

  def no_training(*args, **kwargs):
    raise AssertionError("the smoke config must not train the classifier")

  monkeypatch.setattr(classifier, "train", no_training)
  config = load_config("experiments/mnist.py", "smoke")
  assert config.evaluation.train_classifier is False
  config.evaluation.classifier_dir = str(tmp_path / "empty")
  assert not evaluate.feature_metrics_on(config, mnist)
  ev = evaluate.Evaluator(config, mnist)
  assert ev.parzen and ev.scorer is None and ev.active
  assert "Feature metrics (FD, precision/recall, digits) skipped" in capsys.readouterr().out
  assert not os.path.exists(tmp_path / "empty")
  exp = MNIST([config])
  exp.feature_metrics = False
  assert exp.selection().key == "val_parzen_ll" and exp.selection().ema_guard is None

  config.evaluation.classifier_dir = mnist_classifier[1]
  assert evaluate.feature_metrics_on(config, mnist)  # cached: the Evaluator loads it
  exp.feature_metrics = True
  assert exp.selection().ema_guard[0] == "val_frechet_distance"
