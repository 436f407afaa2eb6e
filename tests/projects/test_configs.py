"""Every experiment config has the keys, docstring and smoke variant the project promises,
and the command users know (--config=experiments/NAME.py) loads it."""

import types

import numpy as np
import pytest
from conftest import ROOT

import projects
from benchmarks.common import load_config
from gan_jax.run import build, sweep

CONFIGS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "experiments").glob("*.py"))
PROJECT_CONFIGS = {p.stem: str(p.relative_to(ROOT))
                   for p in (ROOT / "projects").glob("*/configs/*.py") if p.stem != "__init__"}
KEYS = ["seed", "num_train_steps", "batch_size", "log_every", "model", "optimizer", "gan"]
GAN_KEYS = ["eval_every", "checkpoint_every", "data.name", "data.manual_dir", "evaluation.parzen",
            "evaluation.classifier_metrics"]


def lookup(config, dotted):
  for part in dotted.split("."):
    config = config[part]
  return config


def test_there_are_experiments():
  for name in ("mnist", "mnist_adam", "gaussian_1d", "ring_2d", "ring_sweep"):
    assert f"experiments/{name}.py" in CONFIGS


@pytest.mark.parametrize("path", CONFIGS)
@pytest.mark.parametrize("arg", [None, "smoke"])
def test_config_keys_and_spec(path, arg):
  config = load_config(path, arg)
  experiment = config.experiment
  for key in KEYS + (GAN_KEYS if experiment == "mnist" else []):
    lookup(config, key)  # raises if absent
  if experiment == "mnist":
    gan = build.make_gan(config, data_dim=784, batches_per_epoch=500)
  elif experiment == "mnist_conditional":  # its players need the data's size only
    from projects.mnist_conditional import model  # pylint: disable=import-outside-toplevel
    gan = model.make_gan([config], types.SimpleNamespace(dim=784, train=np.zeros((50_000, 1))))
  elif experiment == "cifar10":  # the training split's size only
    from projects.cifar10 import model  # pylint: disable=import-outside-toplevel
    gan = model.make_gan([config], 40_000)
  else:  # the toys' specs need no data set
    gan = projects.find(config.experiment)([config]).make_gan(None)
  assert gan.latent_dim == config.model.latent_dim
  for replica in sweep.expand(config):  # every swept value fits its field
    assert replica.config.get("sweep", ()) == ()
    # ... and every replica passes its experiment's schema, as launch.py checks it
    projects.find(replica.config.experiment).check(replica.config, num_devices=1)
  if arg == "smoke":
    assert config.num_train_steps <= 500


@pytest.mark.parametrize("path", CONFIGS)
def test_each_command_users_know_loads_its_project_s_config_whose_docstring_gives_it(path):
  name = path.split("/")[-1][:-3]
  assert name in PROJECT_CONFIGS, f"{path} names no config in projects/*/configs/"
  assert load_config(path).to_dict() == load_config(PROJECT_CONFIGS[name]).to_dict()
  doc = (ROOT / PROJECT_CONFIGS[name]).read_text().split('"""')[1]
  assert f"python launch.py --config={path}" in doc
  assert f"--config={path}:smoke" in doc


def test_unknown_variant_is_refused():
  with pytest.raises(ValueError, match="smoke"):
    load_config("experiments/mnist.py", "tiny")


def test_mnist_config_is_the_authors_setup():
  c = load_config("experiments/mnist.py")
  assert (c.batch_size, c.model.latent_dim, c.model.latent_dist) == (100, 100, "uniform")
  assert tuple(c.model.generator.hidden) == (1200, 1200)
  assert (tuple(c.model.discriminator.hidden), c.model.discriminator.pieces) == ((240, 240), 5)
  assert (c.model.discriminator.input_keep, c.model.discriminator.hidden_keep) == (0.8, 0.5)
  assert (c.gan.update_rule, c.gan.g_loss) == ("simultaneous", "non_saturating")
  assert c.optimizer.name == "paper_sgd" and c.optimizer.learning_rate == 0.1
