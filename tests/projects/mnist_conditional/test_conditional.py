"""The conditional MNIST project: the label reaches both players, per-class sampling, the
label-aware metrics on real images, and the config end to end."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from benchmarks.common import load_config
from gan_jax.errors import UserError
from projects.mnist_conditional import evaluate, model

pytestmark = pytest.mark.xdist_group("mnist_classifier")
ROOT = pathlib.Path(__file__).resolve().parents[3]


def small_players():
  g = model.ConditionalGenerator(output_dim=784, z_hidden=8, cond_hidden=8, joint_hidden=16)
  d = model.ConditionalDiscriminator(x_hidden=8, cond_hidden=4, joint_hidden=8, init_scale=0.5)
  return g, d


def test_the_label_reaches_both_players_and_a_bad_label_is_named():
  g, d = small_players()
  z = jnp.ones((2, 100)) * 0.3
  labels = jnp.array([3, 7], jnp.int32)
  g_vars = g.init(jax.random.key(0), z, cond=labels)
  same_z = g.apply(g_vars, jnp.repeat(z[:1], 2, 0), cond=labels)
  assert same_z.shape == (2, 784) and not np.allclose(same_z[0], same_z[1])
  d_vars = d.init({"params": jax.random.key(1)}, same_z, cond=labels)
  out = d.apply(d_vars, jnp.repeat(same_z[:1], 2, 0), cond=labels)
  assert out.shape == (2,) and not np.isclose(out[0], out[1])
  with pytest.raises(ValueError, match=r"cond has shape \(2, 10\).*integer labels \[B\]"):
    g.apply(g_vars, z, cond=jax.nn.one_hot(labels, 10))
  for bad in ([3, 10], [-1, 2]):  # one_hot would make these an all-zero, unconditional row
    with pytest.raises(ValueError, match=r"labels in \[0, 10\)"):
      d.apply(d_vars, same_z, cond=jnp.array(bad, jnp.int32))


def test_label_concat_players_are_the_paper_s_on_label_joined_inputs():
  """G's parameters are named as the unconditional G's (its output bias settable), both players
  read the label, and D's dropout never drops the label: on blank pixels (nothing to drop),
  D in training mode with hidden units kept is D in evaluation mode, whatever the key."""
  config = load_config("experiments/mnist_conditional.py", "label_concat")
  config.model.generator.hidden, config.model.discriminator.hidden = (16,), (8,)
  config.model.discriminator.hidden_keep = 1.0
  g, d = model.make_players(config.model, 784)
  assert isinstance(g, model.LabelledGenerator) and d.input_keep == 1.0 and d.pixel_keep == 0.8
  z, labels = jnp.full((2, 100), 0.3), jnp.array([3, 7], jnp.int32)
  g_vars = g.init(jax.random.key(0), z, cond=labels)
  assert g_vars["params"]["hidden_0"]["kernel"].shape == (110, 16)
  assert g_vars["params"]["output"]["bias"].shape == (784,)
  x = g.apply(g_vars, z, cond=labels)
  assert x.shape == (2, 784) and not np.allclose(x[0], x[1])
  d_vars = d.init({"params": jax.random.key(1)}, x, cond=labels, train=False)
  assert d_vars["params"]["hidden_0"]["kernel"].shape == (794, 8 * 5)
  blank = jnp.zeros((2, 784))
  evaluation = d.apply(d_vars, blank, cond=labels, train=False)
  assert not np.isclose(evaluation[0], evaluation[1])
  for seed in range(3):
    trained = d.apply(d_vars, blank, cond=labels, train=True,
                      rngs={"dropout": jax.random.key(seed)})
    np.testing.assert_allclose(trained, evaluation, rtol=1e-6)
  assert not np.allclose(d.apply(d_vars, x, cond=labels, train=True,
                                 rngs={"dropout": jax.random.key(0)}),
                         d.apply(d_vars, x, cond=labels, train=False))  # pixels are dropped


def test_each_architecture_takes_its_own_player_fields_only():
  from projects.mnist_conditional.experiment import (  # pylint: disable=import-outside-toplevel
    MNISTConditional,
  )
  for arg in ("smoke", "label_concat,smoke"):
    MNISTConditional.check(load_config("experiments/mnist_conditional.py", arg), 1)
  config = load_config("experiments/mnist_conditional.py", "label_concat")
  config.model.generator.z_hidden = 200  # Mirza & Osindero's field, which these players lack
  with pytest.raises(UserError, match=r"model.generator.z_hidden is not a field.*"
                                      r"model.name='label_concat'"):
    MNISTConditional.check(config, 1)
  with pytest.raises(ValueError, match="Unknown config argument 'concat'"):
    load_config("experiments/mnist_conditional.py", "concat")


def test_grids_have_one_row_per_digit_and_the_same_noise_down_each_column():
  from conftest import tiny_gan  # pylint: disable=import-outside-toplevel
  z, labels = evaluate.grid_inputs(tiny_gan(), jax.random.key(0), cols=4)
  assert labels.tolist() == [d for d in range(10) for _ in range(4)]
  np.testing.assert_array_equal(z[:4], z[4:8])
  assert evaluate.even_labels(25).tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_real_digits_score_as_the_labels_they_are_asked_for(mnist, mnist_classifier):
  """Test images standing in for samples: shown in label order, the classifier reads the
  labels asked for and each digit's FD is small; under the wrong labels, neither."""
  _, cache = mnist_classifier
  config = load_config("experiments/mnist_conditional.py", "smoke")
  config.evaluation.classifier_dir = cache
  config.evaluation.parzen = False
  ev = evaluate.ConditionalEvaluator(config, mnist)
  by_class = [np.flatnonzero(mnist.validation_labels == c) for c in range(10)]
  order = np.array([by_class[c][i // 10] for i, c in enumerate(ev.labels)])
  right = ev.score(mnist.validation[order] / 255.0)
  # 200 images a digit: an FD of a few units is this sample size's bias.
  assert right["label_accuracy"] >= 0.98 and right["class_fd_mean"] < 20.0
  shifted = np.array([by_class[(c + 1) % 10][i // 10] for i, c in enumerate(ev.labels)])
  wrong = ev.score(mnist.validation[shifted] / 255.0)
  assert wrong["label_accuracy"] < 0.05 and wrong["class_fd_mean"] > 5 * right["class_fd_mean"], (
      right, wrong)
  assert abs(wrong["frechet_distance"] - right["frechet_distance"]) < 0.5  # the same images


def test_the_conditional_config_trains_selects_and_evaluates_end_to_end(tfds_dir,
                                                                        mnist_classifier,
                                                                        tmp_path):
  """launch.py on the real data and players: (image, label) minibatches, grids with one row
  per digit, the label-aware metrics in the rows, and --mode=eval's class grid."""
  from conftest import MNIST_DIR  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / "run")
  flags = ["--config=experiments/mnist_conditional.py:smoke", f"--workdir={workdir}",
           f"--config.data.manual_dir={MNIST_DIR}", f"--config.data.data_dir={tfds_dir}",
           f"--config.evaluation.classifier_dir={mnist_classifier[1]}",
           "--config.num_train_steps=50", "--config.eval_every=50",
           "--config.checkpoint_every=50", "--config.steps_per_call=25"]
  run = lambda *extra: subprocess.run([sys.executable, "launch.py", *flags, *extra], cwd=ROOT,  # noqa: E731
                                      capture_output=True, text=True, timeout=600)
  trained = run()
  assert trained.returncode == 0, trained.stderr[-3000:]
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  evals = [r for r in rows if "label_accuracy" in r]
  assert evals and {"ema_label_accuracy", "class_fd_mean", "val_parzen_ll"} <= set(evals[-1])
  assert 0.0 <= evals[-1]["label_accuracy"] <= 1.0
  with Image.open(os.path.join(workdir, "samples", "step_0000050.png")) as grid:
    assert grid.size == (10 * 28 + 11 * 2,) * 2
  scored = run("--mode=eval")
  assert scored.returncode == 0, scored.stderr[-3000:]
  with Image.open(os.path.join(workdir, "class_grid.png")) as grid:
    assert grid.size == (16 * 28 + 17 * 2, 10 * 28 + 11 * 2)
  with open(os.path.join(workdir, "eval.json")) as f:
    scores = json.load(f)
  row = f"| label accuracy (classifier reads the label asked for) | {scores['label_accuracy']:.4f}"
  assert row in scored.stdout
