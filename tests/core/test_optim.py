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


def paper_reference(grads, *, lr=0.1, decay=1.000004, floor=1e-6, m0=0.5, m1=0.7,
                    start=1, saturate=3, steps_per_epoch=2):
  """pylearn2's rule with the authors' schedules, in plain Python floats."""
  v = p = 0.0
  out = []
  for t, g in enumerate(grads):
    rate = max(lr / decay**t, floor)
    frac = min(max((t // steps_per_epoch - start) / (saturate - start), 0.0), 1.0)
    v = (m0 + (m1 - m0) * frac) * v - rate * g
    p += v
    out.append(p)
  return out


def test_paper_schedule_learning_rate_and_momentum():
  opt = optim.paper_sgd(steps_per_epoch=2, momentum_start_epoch=1, momentum_saturate_epoch=3)
  grads = [1.0, -2.0, 0.5, 1.0, 3.0, -1.0, 2.0, 0.25]
  got, state = run(opt, grads)
  np.testing.assert_allclose(got, paper_reference(grads), rtol=1e-5)
  # The state holds the base rate (a sweepable array) and the momentum the last update
  # used: count 7, epoch 3, saturated.
  np.testing.assert_allclose(state.hyperparams["learning_rate"], 0.1, rtol=1e-6)
  np.testing.assert_allclose(state.hyperparams["momentum"], 0.7, rtol=1e-6)
  _, state = run(opt, [0.0] * 5)  # last update: count 4, epoch 2, halfway
  np.testing.assert_allclose(state.hyperparams["momentum"], 0.6, rtol=1e-6)


class _Cfg:
  name = "paper_sgd"
  decay_factor = 2.0
  min_learning_rate = 1e-3


def test_learning_rate_floor():
  opt = optim.paper_sgd(decay_factor=2.0, min_learning_rate=1e-3, steps_per_epoch=2,
                        momentum_start_epoch=1, momentum_saturate_epoch=3)
  grads = [1.0] * 20
  got, state = run(opt, grads)
  np.testing.assert_allclose(got, paper_reference(grads, decay=2.0, floor=1e-3), rtol=1e-5)
  np.testing.assert_allclose(optim.current_learning_rate(_Cfg, state), 1e-3, rtol=1e-6)
  _, state = run(opt, [0.0] * 2)
  np.testing.assert_allclose(optim.current_learning_rate(_Cfg, state), 0.1 / 4, rtol=1e-6)


def test_unknown_optimizer_is_refused():
  class Cfg:
    name = "lion"

  with pytest.raises(ValueError, match="paper_sgd"):
    optim.make_optimizer(Cfg(), steps_per_epoch=1)


def test_a_warmup_ramps_the_rate_up_and_none_changes_nothing():
  grads = [1.0, -2.0, 0.5, 1.0, 3.0, -1.0]
  plain, _ = run(optim.paper_sgd(steps_per_epoch=2), grads)
  zero, _ = run(optim.paper_sgd(steps_per_epoch=2, warmup_steps=0), grads)
  assert zero == plain  # bitwise: the authors' schedule is untouched
  warm, state = run(optim.paper_sgd(learning_rate=0.2, momentum_start_epoch=10,
                                    steps_per_epoch=2, warmup_steps=4), [1.0] * 6)
  # Momentum 0.5 throughout; rates 0.05, 0.1, 0.15, 0.2, 0.2, ... (times the tiny decay).
  rates = [0.2 * min(1.0, (t + 1) / 4) / 1.000004 ** t for t in range(6)]
  v = p = 0.0
  expect = []
  for r in rates:
    v = 0.5 * v - r
    p += v
    expect.append(p)
  np.testing.assert_allclose(warm, expect, rtol=1e-5)

  class Cfg(_Cfg):
    decay_factor, min_learning_rate, warmup_steps = 1.000004, 1e-6, 8

  np.testing.assert_allclose(optim.current_learning_rate(Cfg, state),
                             0.2 * 7 / 8 / 1.000004 ** 6, rtol=1e-6)
