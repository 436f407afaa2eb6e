"""Unit tests of train.py's checks (the end-to-end runs are in test_launch.py)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT  # noqa: E402

from benchmarks.common import load_config  # noqa: E402
from gan_jax.errors import UserError  # noqa: E402
from gan_jax.run import divergence, train  # noqa: E402
from projects.mnist.experiment import MNIST  # noqa: E402


def _check_finite(metrics, first_step, last_good):
  found = divergence.first_nonfinite(metrics, first_step)
  if found:
    key, value, step = found
    raise divergence.error(f"{key} became {value}", step, last_good, 0)


def test_divergence_names_the_step_and_the_quantity():
  metrics = {"d_loss": np.array([0.6, 0.7, np.nan, np.nan]), "g_loss": np.array([0.7] * 4)}
  with pytest.raises(UserError, match=r"d_loss became nan at step 503\. The newest checkpoint "
                                      r"\(step 500\) is intact"):
    _check_finite(metrics, 500, 500)
  with pytest.raises(UserError, match="g_grad_norm became inf at step 1. No checkpoint"):
    _check_finite({"g_grad_norm": np.array([np.inf])}, 0, None)
  _check_finite({"d_loss": np.array([0.5, 0.6])}, 0, None)  # finite: no error
  # norms measured at every 5th iteration of a 10-iteration chunk sit at iterations 5 and 10
  sparse = {"d_loss": np.ones(10), "d_grad_norm": np.array([1.0, np.inf])}
  with pytest.raises(UserError, match="d_grad_norm became inf at step 110"):
    _check_finite(sparse, 100, 100)


def test_chunk_length_puts_every_event_on_a_boundary():
  config = load_config("experiments/mnist.py")
  config.steps_per_call, config.log_every, config.eval_every, config.checkpoint_every = (
      500, 250, 1000, 1500)
  assert train.chunk_length(config) == 250


@pytest.mark.parametrize("field,value,match", [
    ("batch_size", 0, "config.batch_size is 0"),
    ("num_train_steps", -5, "config.num_train_steps is -5"),
    ("checkpoint_every", 0, "config.checkpoint_every is 0"),
])
def test_validate_config_refuses_non_positive_counts(field, value, match):
  config = load_config("experiments/mnist.py")
  with config.unlocked():
    config[field] = value
  with pytest.raises(UserError, match=match):
    MNIST.check(config, num_devices=1)


def test_validate_config_refuses_batch_not_dividing_devices_and_bad_lr():
  config = load_config("experiments/mnist.py")
  with pytest.raises(UserError, match="batch_size=100 does not divide over the 3 devices"):
    MNIST.check(config, num_devices=3)
  config.optimizer.learning_rate = 0.0
  with pytest.raises(UserError, match="learning_rate is 0.0"):
    MNIST.check(config, num_devices=4)


def test_the_driver_does_not_import_an_installed_torch(tmp_path):
  # tensorboardX's writer imports torch whenever it is installed; the driver keeps it out.
  fake = tmp_path / "torch"
  fake.mkdir()
  (fake / "__init__.py").write_text("IMPORTED = True\n")
  code = ("import sys; import gan_jax.run.train; assert 'torch' not in sys.modules; "
          "import torch; assert torch.IMPORTED; print('ok')")
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
  assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
