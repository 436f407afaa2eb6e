import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import optim


def run(opt, grads):
  params = jnp.zeros(())
  state = opt.init(params)
  out = []
  for g in grads:
    updates, state = opt.update(jnp.asarray(g), state, params)
    params = params + updates
    out.append(float(params))
  return out, state


def test_momentum_sgd_is_pylearn2s_rule():
  lr, mom = 0.1, 0.5
  grads = [1.0, 2.0, -1.0, 0.5]
  got, _ = run(optim.momentum_sgd(lr, mom), grads)
  v = p = 0.0
  expect = []
  for g in grads:
    v = mom * v - lr * g
    p += v
    expect.append(p)
  np.testing.assert_allclose(got, expect, rtol=1e-6)


def test_paper_schedule_learning_rate_and_momentum():
  opt = optim.paper_sgd(steps_per_epoch=2, momentum_start_epoch=1, momentum_saturate_epoch=3)
  _, state = run(opt, [0.0] * 3)
  # The state holds the values the last update used: count 2 (epoch 1) after 3 updates.
  hp = state.hyperparams
  np.testing.assert_allclose(hp["learning_rate"], 0.1 / 1.000004**2, rtol=1e-6)
  np.testing.assert_allclose(hp["momentum"], 0.5, rtol=1e-6)
  _, state = run(opt, [0.0] * 7)  # last update: count 6, epoch 3, saturated
  np.testing.assert_allclose(state.hyperparams["momentum"], 0.7, rtol=1e-6)
  _, state = run(opt, [0.0] * 5)  # last update: count 4, epoch 2, halfway
  np.testing.assert_allclose(state.hyperparams["momentum"], 0.6, rtol=1e-6)


def test_learning_rate_floor():
  opt = optim.paper_sgd(decay_factor=2.0, min_learning_rate=1e-3)
  _, state = run(opt, [0.0] * 20)
  np.testing.assert_allclose(state.hyperparams["learning_rate"], 1e-3, rtol=1e-6)


def test_unknown_optimizer_is_refused():
  class Cfg:
    name = "lion"

  with pytest.raises(ValueError, match="paper_sgd"):
    optim.make_optimizer(Cfg(), steps_per_epoch=1)
