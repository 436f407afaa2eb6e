"""Config checks before any compile: each mistake is one UserError naming the field."""

import os
import signal

import pytest

from benchmarks.common import load_config  # noqa: E402
from gan_jax.errors import UserError  # noqa: E402
from gan_jax.run import preemption, schema, train  # noqa: E402
from projects.mnist.experiment import MNIST  # noqa: E402


def config_with(**changes):
  config = load_config("experiments/mnist.py")
  with config.unlocked():
    for dotted, value in changes.items():
      *path, leaf = dotted.split("__")
      section = config
      for p in path:
        section = section[p]
      if leaf in section:  # a config file may give a field any type: start afresh
        del section[leaf]
      if value is not DELETE:
        section[leaf] = value
  return config


DELETE = object()


@pytest.mark.parametrize("path", ["experiments/mnist.py", "experiments/mnist_adam.py",
                                  "experiments/mnist_fast.py"])
@pytest.mark.parametrize("arg", [None, "smoke"])
def test_the_shipped_gan_configs_pass(path, arg):
  config = load_config(path, arg)
  if "fast" not in path:
    schema.check(config, 4, MNIST.schema())
    return
  # D's minibatch spread in groups of 4: batch 200 runs on 1 or 2 devices; on 4 (50 each)
  # the schema names the fix, which its docstring gives.
  schema.check(config, 2, MNIST.schema())
  with pytest.raises(UserError, match=r"minibatch of 50, which is not a multiple of it"):
    schema.check(config, 4, MNIST.schema())
  config.model.discriminator.minibatch_std = 5
  for devices in (1, 2, 4, 8):
    schema.check(config, devices, MNIST.schema())


@pytest.mark.parametrize("changes,message", [
    (dict(optimiser=0.1), r"config\.optimiser is not a field gan_jax knows.*Did you mean "
                          r"config\.optimizer\?"),
    (dict(model__generator__hiden=(8,)), r"config\.model\.generator\.hiden is not a field.*"
                                         r"Did you mean config\.model\.generator\.hidden\?"),
    (dict(eval_every=DELETE), r"config\.eval_every is missing"),
    (dict(batch_size="100"), r"config\.batch_size is '100' \(str\); it must be an integer"),
    (dict(batch_size=0), r"config\.batch_size is 0; it must be a positive integer"),
    (dict(batch_size=-100), r"config\.batch_size is -100"),
    (dict(num_train_steps=2.5), r"config\.num_train_steps is 2\.5 \(float\)"),
    (dict(gan__k=0), r"config\.gan\.k is 0; it must be an integer >= 1"),
    (dict(gan__k=2), r"config\.gan\.k is 2 but config\.gan\.update_rule is 'simultaneous'"),
    (dict(optimizer__learning_rate=0.0), r"config\.optimizer\.learning_rate is 0\.0; it must "
                                         r"be a positive number"),
    (dict(optimizer__learning_rate=-1e-3), r"config\.optimizer\.learning_rate is -0\.001"),
    (dict(optimizer__lookahead_alpha=0.0), r"config\.optimizer\.lookahead_alpha is 0\.0; it "
                                           r"must be a number in \(0, 1\]"),
    (dict(optimizer__anneal_steps=-5), r"config\.optimizer\.anneal_steps is -5; it must be an "
                                       r"integer >= 0 \(0: off\)"),
    (dict(optimizer__name="rmsprop"), r"config\.optimizer\.name is 'rmsprop', which gan_jax "
                                      r"does not know; use one of 'paper_sgd', 'sgd', 'adam'"),
    (dict(data__name="cifar10"), r"config\.data\.name is 'cifar10'; it must be one of 'mnist'"),
    (dict(model__name="dcgan"), r"config\.model\.name is 'dcgan'; it must be one of "
                                r"'mlp_maxout'"),
    (dict(model__discriminator__activation="swish"), r"discriminator\.activation is 'swish'"),
    (dict(model__generator__hidden=(1200, 0)), r"config\.model\.generator\.hidden is "
                                               r"\(1200, 0\).*tuple of positive integers"),
    (dict(model__discriminator__input_keep=1.5), r"input_keep is 1\.5; it must be a number "
                                                 r"in \(0, 1\]"),
    (dict(evaluation__parzen="yes"), r"config\.evaluation\.parzen is 'yes' \(str\); it must "
                                     r"be True or False"),
    (dict(parallel="tpu"), r"config\.parallel is 'tpu'"),
    (dict(gan__ema_power=-1.0), r"config\.gan\.ema_power is -1\.0; it must be a number >= 0"),
    (dict(gan__ema_decay=0.0, gan__ema_power=7.0), r"config\.gan\.ema_power is 7\.0, which "
                                                   r"shapes G's EMA, but config\.gan\.ema_decay"),
])
def test_bad_field_is_named(changes, message):
  with pytest.raises(UserError, match=message):
    schema.check(config_with(**changes), 1, MNIST.schema())


@pytest.mark.parametrize("changes,message", [
    (dict(optimizer__learning_rate=float("inf")), r"learning_rate is inf.*a finite number"),
    (dict(optimizer__learning_rate=float("nan")), r"learning_rate is nan.*a finite number"),
    (dict(gan__real_label=float("nan")), r"config\.gan\.real_label is nan"),
    (dict(optimizer__decay_factor=float("inf")), r"decay_factor is inf"),
    (dict(evaluation__num_samples=3), r"num_samples is 3; the classifier metrics need at least "
                                      r"6 samples"),
])
def test_non_finite_values_and_too_few_samples_are_refused_before_training(changes, message):
  config = config_with(evaluation__classifier_metrics=True, **changes)
  with pytest.raises(UserError, match=message) as e:
    MNIST.check(config, 1)
  assert "\n" not in str(e.value)


def test_as_few_samples_as_the_metrics_need_pass():
  MNIST.check(config_with(evaluation__classifier_metrics=True, evaluation__num_samples=6), 1)
  MNIST.check(config_with(evaluation__classifier_metrics=False, evaluation__num_samples=1), 1)


def test_the_ring_refuses_grad_norms_off_it_measures_them():
  from projects.ring_2d import experiment as ring  # pylint: disable=import-outside-toplevel
  config = load_config("experiments/ring_2d.py")
  ring.Ring2D.check(config, num_devices=1)
  config.gan.grad_norms = False
  with pytest.raises(UserError, match=r"config\.gan\.grad_norms is False"):
    ring.Ring2D.check(config, num_devices=1)


def test_batch_that_does_not_split_over_the_devices():
  with pytest.raises(UserError, match=r"batch_size=100 does not divide over the 3 devices.*"
                                      r"--config\.batch_size=99"):
    schema.check(config_with(), 3, MNIST.schema())


def test_minibatch_std_group_must_divide_each_devices_batch():
  schema.check(config_with(model__discriminator__minibatch_std=4), 1, MNIST.schema())
  with pytest.raises(UserError, match=r"minibatch_std=8 groups each device's minibatch of 50, "
                                      r"which is not a multiple of it"):
    schema.check(config_with(model__discriminator__minibatch_std=8), 2, MNIST.schema())
  with pytest.raises(UserError, match=r"minibatch_std is -1; it must be an int >= 0"):
    schema.check(config_with(model__discriminator__minibatch_std=-1), 1, MNIST.schema())
  schema.check(config_with(model__discriminator__minibatch_features=16), 1, MNIST.schema())
  with pytest.raises(UserError, match=r"minibatch_features is -2; it must be an int >= 0"):
    schema.check(config_with(model__discriminator__minibatch_features=-2), 1, MNIST.schema())
  with pytest.raises(UserError, match=r"minibatch_dims is 0; it must be an int >= 1"):
    schema.check(config_with(model__discriminator__minibatch_dims=0), 1, MNIST.schema())
  schema.check(config_with(model__discriminator__pack=2, model__discriminator__minibatch_std=5),
               2, MNIST.schema())  # 50 each: 25 packs, 5 groups of 5
  with pytest.raises(UserError, match=r"pack=3 packs each device's minibatch of 50, which is "):
    schema.check(config_with(model__discriminator__pack=3), 2, MNIST.schema())
  with pytest.raises(UserError, match=r"minibatch_std=4 groups each device's minibatch of 100 "
                                      r"in packs of 2, which is not a multiple of it"):
    schema.check(config_with(model__discriminator__pack=2, model__discriminator__minibatch_std=4),
                 1, MNIST.schema())


def test_unwritable_workdir_is_refused(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  with pytest.raises(UserError, match=r"cannot be written \(Not a directory"):
    train.prepare_workdir(str(blocker / "run"))
  train.prepare_workdir(str(tmp_path / "fine"))  # creates it, leaves no probe behind
  assert os.listdir(tmp_path / "fine") == []


def test_resume_differences_refuse_the_model_and_allow_run_length():
  saved = config_with().to_dict()
  refused, noticed = schema.resume_differences(saved, fields=MNIST.schema(), config=config_with(
      num_train_steps=10, log_every=7, eval_every=9, evaluation__parzen=False,
      data__manual_dir="/elsewhere"))
  assert refused == [] and noticed == []
  refused, noticed = schema.resume_differences(saved, fields=MNIST.schema(), config=config_with(
      model__discriminator__pieces=3, seed=1, optimizer__learning_rate=0.05))
  assert refused == ["model.discriminator.pieces: 5 in the checkpoint, 3 now",
                     "seed: 0 in the checkpoint, 1 now"]
  assert noticed == ["optimizer.learning_rate: 0.1 in the checkpoint, 0.05 now"]
  del saved["model"]["name"]  # absent from an older checkpoint's config: its default
  assert schema.resume_differences(saved, config_with(), MNIST.schema()) == ([], [])


def test_first_signal_asks_for_a_stop_and_arms_the_second_to_kill():
  before = signal.getsignal(signal.SIGINT)
  with preemption.STOP.installed() as stop:
    assert not stop.requested()
    os.kill(os.getpid(), signal.SIGTERM)  # handled by the Python handler: a flag
    assert stop.requested() and stop.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL  # a second one ends the process
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
  assert signal.getsignal(signal.SIGINT) is before
