"""Feature matching with a 10-class D: minibatches that mix the labelled draw with hidden
labels, a D loss that reads only the labelled rows, training that never sees another label,
and the command end to end on real MNIST."""

import json
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, assert_trees_close

import gan_jax
from gan_jax.errors import UserError
from projects.mnist_semisupervised import feature_matching as fm

N, F = 60, 6


def toy_data():
  images = (np.arange(N * F) % 251).astype(np.uint8).reshape(N, F)
  return images, (np.arange(N) % 10).astype(np.int32)


def test_each_minibatch_holds_the_labelled_draw_then_rows_with_hidden_labels():
  images, labels = toy_data()
  index = tuple(range(0, 40, 2))  # 20 labelled examples, 10 per minibatch
  source = fm.LabelledMix(N, index, labelled=10)
  key = jax.random.key(0)
  seen = []
  for b in range(2):  # one pass over the labelled draw
    x, y = source.sample((images, labels), key, jnp.int32(b), 0, 16, 16)
    rows = np.asarray(x * 255.0).round().astype(np.int32)[:, 0] // F  # row r holds r * F + ...
    assert x.shape == (16, F) and x.dtype == jnp.float32
    assert np.all(np.asarray(y[:10]) == labels[rows[:10]]) and np.all(np.asarray(y[10:]) == -1)
    seen += rows[:10].tolist()
    # A device's share is the same rows as the global minibatch's.
    part = source.sample((images, labels), key, jnp.int32(b), 8, 8, 16)
    assert_trees_close(part, (x[8:], y[8:]))
  assert sorted(seen) == list(index)  # every labelled example once per pass


def test_the_d_loss_reads_the_labelled_rows_only():
  rng = np.random.RandomState(0)
  real = {"logits": jnp.asarray(rng.randn(6, 10), jnp.float32), "features": jnp.zeros((6, 3))}
  fake = {"logits": jnp.asarray(rng.randn(6, 10), jnp.float32), "features": jnp.zeros((6, 3))}
  cond = jnp.asarray([3, 7, -1, -1, -1, -1])
  loss = lambda c: fm.ssl_d_loss(real, fake, real_label=1.0, cond=c)  # noqa: E731
  lse = jax.nn.logsumexp

  def unsupervised(rows):  # the unlabelled rows of data against every sample
    return 0.5 * (jnp.mean(jax.nn.softplus(-lse(real["logits"][rows], -1))) +
                  jnp.mean(jax.nn.softplus(lse(fake["logits"], -1))))
  np.testing.assert_allclose(loss(jnp.full(6, -1)), unsupervised(slice(None)), rtol=1e-6)
  logp = jax.nn.log_softmax(real["logits"])
  np.testing.assert_allclose(loss(cond), unsupervised(slice(2, None)) -
                             (logp[0, 3] + logp[1, 7]) / 2, rtol=1e-6)
  assert float(loss(cond.at[0].set(4))) != float(loss(cond))


def test_d_is_initialised_from_data_and_its_hidden_scales_stay_fixed():
  gan = fm.make_gan()
  x = jnp.asarray(np.random.RandomState(0).rand(64, 784), jnp.float32)
  labels = jnp.arange(64, dtype=jnp.int32) % 10
  state = gan_jax.init_state(gan, jax.random.key(0), (x, labels))
  params = jax.jit(fm.init_from_data, static_argnums=0)(gan.discriminator, state.d.params, x,
                                                        jax.random.key(1))
  _, sown = gan.discriminator.apply({"params": params}, x, train=True,
                                    rngs={"dropout": jax.random.key(1)}, mutable=["intermediates"])
  for name in ("WeightNormDense_0", "WeightNormDense_5"):  # the first layer and the logits
    t = sown["intermediates"][name]["normalized"][0]
    out = t * params[name]["scale"] + params[name]["bias"]
    np.testing.assert_allclose(jnp.mean(out, 0), 0.0, atol=1e-4)
    np.testing.assert_allclose(jnp.std(out, 0), 1.0, rtol=1e-3)
  state = state.replace(d=state.d.replace(params=params, opt_state=gan.d_optimizer.init(params)))
  new, _ = jax.jit(gan_jax.train_step, static_argnums=0)(  # compiled once, not op by op
      gan, state, (x[None, :16], labels[None, :16]), jax.random.key(2))
  for name in ("WeightNormDense_0", "WeightNormDense_4"):
    np.testing.assert_array_equal(new.d.params[name]["scale"], params[name]["scale"])
  last = "WeightNormDense_5"  # the logits' scale is trained
  assert not np.allclose(new.d.params[last]["scale"], params[last]["scale"])
  # The averaged D: 0.999 of the old average (the initial parameters), 0.001 of the new ones.
  expect = jax.tree.map(lambda a, b: 0.999 * a + 0.001 * b, params, new.d.params)
  assert_trees_close(fm.averaged_d(new), expect, rtol=1e-5, atol=1e-7)


def test_feature_matching_reads_the_unlabelled_rows_of_data_only():
  real = {"features": jnp.asarray([[9.0, 9.0], [1.0, 2.0], [3.0, 4.0]])}
  fake = {"features": jnp.asarray([[2.0, 3.0], [2.0, 3.0]])}
  got = fm.feature_matching(fake, real_out=real, cond=jnp.asarray([5, -1, -1]))
  np.testing.assert_allclose(got, 0.0, atol=1e-7)  # the labelled row (9, 9) is left out
  np.testing.assert_allclose(fm.feature_matching(fake, real_out=real, cond=jnp.full(3, -1)),
                             ((13.0 / 3 - 2.0) ** 2 + (5.0 - 3.0) ** 2) / 2, rtol=1e-6)


def args(**kw):
  base = dict(steps=4, eval_every=2, learning_rate=0.003, decay_from=0.5, labelled_per_batch=10,
              unlabelled_per_batch=10, seed=0)
  return types.SimpleNamespace(**{**base, **kw})


def tiny_mnist(seed=0, labels=None):
  rng = np.random.RandomState(seed)
  split = lambda n: (rng.randint(0, 256, (n, 784)).astype(np.uint8),  # noqa: E731
                     np.arange(n, dtype=np.int32) % 10)
  (train, train_labels), (val, val_labels), (test, test_labels) = split(200), split(50), split(50)
  if labels is not None:
    train_labels = labels
  return types.SimpleNamespace(train=train, train_labels=train_labels, validation=val,
                               validation_labels=val_labels, test=test, test_labels=test_labels)


def test_training_reads_no_label_outside_the_draw():
  index = np.arange(0, 200, 10)  # 20 labelled: 2 of each digit
  gan, state, rows = fm.train(args(), tiny_mnist(), index, report=lambda s: None)
  scrambled = np.random.RandomState(1).randint(0, 10, 200).astype(np.int32)
  scrambled[index] = np.arange(200, dtype=np.int32)[index] % 10
  _, other, _ = fm.train(args(), tiny_mnist(labels=scrambled), index, report=lambda s: None)
  assert_trees_close(state.d.params, other.d.params, rtol=0, atol=0)
  assert [r["step"] for r in rows] == [2, 4] and 0.0 <= rows[-1]["val_error"] <= 1.0
  assert gan.discriminator.apply({"params": state.d.params},
                                 np.zeros((2, 784), np.float32))["logits"].shape == (2, 10)


def test_the_command_end_to_end_on_mnist(mnist, tfds_dir, tmp_path, xla_optimized):
  from conftest import MNIST_DIR  # pylint: disable=import-outside-toplevel
  del mnist  # prepared by the fixture
  data = [f"--manual_dir={MNIST_DIR}", f"--data_dir={tfds_dir}"]
  results = fm.main([f"--workdir={tmp_path}", "--steps=100", "--eval_every=50", *data])
  errors = [r["val_error"] for r in results["rows"]]  # the averaged D's, still near its start
  assert len(errors) == 2 and errors[-1] < errors[0] < 0.9  # chance is 90%
  assert results["rows"][-1]["val_error_raw_d"] < 0.5
  assert 0.0 < results["test_error"] < 0.9 and len(results["labelled_index"]) == 100
  for name in ("samples.png", "d_params.msgpack", "results.json"):
    assert os.path.getsize(tmp_path / name) > 0
  with open(tmp_path / "results.json") as f:
    assert json.load(f)["labels"] == 100
  with pytest.raises(UserError, match=r"--labels=105: cannot draw 105 labels"):
    fm.main([f"--workdir={tmp_path}", "--labels=105", *data])


def test_bad_steps_are_one_paragraph_and_status_2(tmp_path):
  out = subprocess.run([sys.executable, "-m", "projects.mnist_semisupervised.feature_matching",
                        f"--workdir={tmp_path}", "--steps=1000", "--eval_every=300"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode == 2 and "Traceback" not in out.stderr
  assert out.stderr.startswith("error: --steps=1000 and --eval_every=300")
