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


@pytest.mark.parametrize("name", ["sgd", "adam", "paper_sgd"])
def test_lookahead_pulls_the_weights_to_the_slow_ones_every_k_updates(name):
  fields = dict(name=name, learning_rate=0.1)
  fields.update({"sgd": dict(momentum=0.5), "adam": dict(b1=0.5, b2=0.999),
                 "paper_sgd": dict(decay_factor=1.000004, min_learning_rate=1e-6,
                                   init_momentum=0.5, final_momentum=0.7,
                                   momentum_start_epoch=1, momentum_saturate_epoch=3)}[name])
  grads = [1.0, -2.0, 0.5, 1.0, 3.0, -1.0, 2.0]
  plain_cfg = type("Cfg", (), fields)
  la_cfg = type("Cfg", (), {**fields, "lookahead_steps": 3, "lookahead_alpha": 0.25})
  got, state = run(optim.make_optimizer(la_cfg, steps_per_epoch=2), grads)
  assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.1)  # sweeps still set it
  # Reference: the plain optimizer's steps from the fast weights (its state carried on), the
  # weights moved to slow + 0.25 (fast - slow) after updates 3 and 6.
  inner = optim.make_optimizer(plain_cfg, steps_per_epoch=2)
  inner_state, p, slow, expect = inner.init(jnp.zeros(())), 0.0, 0.0, []
  for t, g in enumerate(grads, 1):
    u, inner_state = inner.update(jnp.asarray(g), inner_state, jnp.asarray(p))
    p = float(p + u)
    if t % 3 == 0:
      slow = p = slow + 0.25 * (p - slow)
    expect.append(p)
  np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-7)
  assert got[2] != pytest.approx(run(inner, grads)[0][2])  # the pull changed the weights
  with pytest.raises(ValueError, match="sync_every"):
    optim.lookahead(optim.momentum_sgd(0.1, 0.0), 0)


def test_anneal_takes_the_rate_linearly_to_zero_and_zero_steps_change_nothing():
  fields = dict(name="adam", learning_rate=0.1, b1=0.5, b2=0.999)
  grads = [1.0, -2.0, 0.5, 1.0, 3.0, -1.0, 2.0, 1.0]
  plain, _ = run(optim.make_optimizer(type("Cfg", (), fields), steps_per_epoch=2), grads)
  off, _ = run(optim.make_optimizer(type("Cfg", (), {**fields, "anneal_steps": 0}),
                                    steps_per_epoch=2), grads)
  assert off == plain  # bitwise
  cfg = type("Cfg", (), {**fields, "anneal_start": 2, "anneal_steps": 4})
  got, state = run(optim.make_optimizer(cfg, steps_per_epoch=2), grads[:5])
  assert optim.current_learning_rate(cfg, state) == pytest.approx(0.1 * 0.25)  # update 5 next
  got, _ = run(optim.make_optimizer(cfg, steps_per_epoch=2), grads)
  steps = np.diff([0.0] + plain)
  factors = [1, 1, 1, 0.75, 0.5, 0.25, 0, 0]  # update t scaled by clip(1 - (t - 2) / 4, 0, 1)
  np.testing.assert_allclose(np.diff([0.0] + got), steps * factors, rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError, match="steps"):
    optim.anneal(0, 0)
