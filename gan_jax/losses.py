"""GAN losses and D's regularisers, as plain functions of the players' outputs.

D returns one real number per example: a logit (D(x) = sigmoid(l)) for the
paper's game, a critic value for the Wasserstein game. The losses below take
those raw outputs (a D of your own may return any pytree of per-example arrays,
e.g. class logits and features, for losses of your own that read it); every
log-probability is written with ``jax.nn.log_sigmoid`` (log D = log_sigmoid(l),
log(1 - D) = log_sigmoid(-l)), so they stay finite, with finite gradients, for
outputs of any magnitude.

Signatures (built-in losses and any callable a ``GAN`` is given):

- D loss: ``d_loss(real_out [m], fake_out [m], *, real_label) -> scalar``, where
  ``real_label`` is a float32 scalar, D's target for real data (1 unless
  one-sided label smoothing). Losses without a target (hinge, Wasserstein)
  ignore it. A D loss with a keyword-only ``cond`` parameter also reads the real
  minibatch's condition (e.g. class labels, for a semi-supervised D): the steps pass it.
- G loss: ``g_loss(fake_out [m]) -> scalar``, or ``g_loss(fake_out [m], *, real_out [m])
  -> scalar`` for a loss that also reads D's outputs on data (relativistic and
  feature-matching losses): a keyword-only ``real_out`` in the signature is enough, the
  steps then pass D's outputs on a real minibatch (constants for G's gradient); one that
  also has ``cond`` gets that minibatch's condition (e.g. to match only unlabelled rows).
- D regulariser: ``reg(d_fn, real [m, ...], fake [m, ...], rng) -> scalar``,
  where ``d_fn(x) -> out [m]`` is D in training mode with the parameters being
  differentiated (its variable-collection updates are discarded).

By name: ``D_LOSSES`` and ``G_LOSSES``. ``"non_saturating"`` and ``"minimax"``
name the same D loss (the paper's BCE, also ``"bce"``); they differ for G.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

DLoss = Callable[..., jax.Array]
GLoss = Callable[..., jax.Array]
Regularizer = Callable[[Callable[[jax.Array], jax.Array], jax.Array, jax.Array, jax.Array],
                       jax.Array]


def binary_cross_entropy(logits: jax.Array, label: float | jax.Array) -> jax.Array:
  """Elementwise BCE between ``label`` in [0, 1] and sigmoid(logits), in nats."""
  return -(label * jax.nn.log_sigmoid(logits) +
           (1.0 - label) * jax.nn.log_sigmoid(-logits))


# --- D losses ---------------------------------------------------------------


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array, *,
                       real_label: float | jax.Array = 1.0) -> jax.Array:
  """D's BCE: label ``real_label`` for data, 0 for samples (the paper's D loss).

  Equals 0.5 * (BCE(real_label, D(x)) + BCE(0, D(G(z)))), the authors' form; with
  ``real_label == 1`` and equal batch sizes it is -V(D, G) / 2, so minimising it
  is D's ascent on the value function. ``real_label < 1`` gives one-sided label
  smoothing (generated samples keep the label 0).
  """
  return 0.5 * (jnp.mean(binary_cross_entropy(real_logits, real_label)) +
                jnp.mean(binary_cross_entropy(fake_logits, 0.0)))


def d_hinge(real_out: jax.Array, fake_out: jax.Array, *,
            real_label: float | jax.Array = 1.0) -> jax.Array:
  """Hinge D loss: mean relu(1 - D(x)) + mean relu(1 + D(G(z))) (``real_label`` unused)."""
  del real_label
  return jnp.mean(jax.nn.relu(1.0 - real_out)) + jnp.mean(jax.nn.relu(1.0 + fake_out))


def d_least_squares(real_out: jax.Array, fake_out: jax.Array, *,
                    real_label: float | jax.Array = 1.0) -> jax.Array:
  """Least-squares D loss (LSGAN, targets 0/1):
  0.5 mean (D(x) - real_label)^2 + 0.5 mean D(G(z))^2."""
  return 0.5 * (jnp.mean(jnp.square(real_out - real_label)) + jnp.mean(jnp.square(fake_out)))


def d_wasserstein(real_out: jax.Array, fake_out: jax.Array, *,
                  real_label: float | jax.Array = 1.0) -> jax.Array:
  """Wasserstein critic loss: mean D(G(z)) - mean D(x) (``real_label`` unused)."""
  del real_label
  return jnp.mean(fake_out) - jnp.mean(real_out)


# --- G losses ---------------------------------------------------------------


def g_non_saturating(fake_logits: jax.Array) -> jax.Array:
  """-mean log D(G(z)), i.e. BCE with label 1: the paper's practical G loss."""
  return -jnp.mean(jax.nn.log_sigmoid(fake_logits))


def g_minimax(fake_logits: jax.Array) -> jax.Array:
  """mean log(1 - D(G(z))): the saturating form of eq. 1."""
  return jnp.mean(jax.nn.log_sigmoid(-fake_logits))


def g_least_squares(fake_out: jax.Array) -> jax.Array:
  """0.5 mean (D(G(z)) - 1)^2 (LSGAN)."""
  return 0.5 * jnp.mean(jnp.square(fake_out - 1.0))


def g_critic(fake_out: jax.Array) -> jax.Array:
  """-mean D(G(z)): G's loss against a hinge or Wasserstein critic."""
  return -jnp.mean(fake_out)


def _relativistic(a: jax.Array, b: jax.Array) -> jax.Array:
  """BCE that outputs ``a`` are more real than the mean of ``b`` and ``b`` less real than
  the mean of ``a``: 0.5 (BCE(1, sig(a - mean b)) + BCE(0, sig(b - mean a)))."""
  return 0.5 * (jnp.mean(binary_cross_entropy(a - jnp.mean(b), 1.0)) +
                jnp.mean(binary_cross_entropy(b - jnp.mean(a), 0.0)))


def d_relativistic(real_out: jax.Array, fake_out: jax.Array, *,
                   real_label: float | jax.Array = 1.0) -> jax.Array:
  """Relativistic average D loss (Jolicoeur-Martineau 2018, RaSGAN): data should look more
  real than the average sample and samples less real than the average data point
  (``real_label`` unused)."""
  del real_label
  return _relativistic(real_out, fake_out)


def g_relativistic(fake_out: jax.Array, *, real_out: jax.Array) -> jax.Array:
  """Relativistic average G loss: D's relativistic loss with the roles of data and samples
  swapped. Reads D's outputs on data, so the steps pass ``real_out``."""
  return _relativistic(fake_out, real_out)


D_LOSSES: dict[str, DLoss] = {
    "bce": discriminator_loss, "non_saturating": discriminator_loss,
    "minimax": discriminator_loss, "hinge": d_hinge, "least_squares": d_least_squares,
    "wasserstein": d_wasserstein, "relativistic": d_relativistic,
}
G_LOSSES: dict[str, GLoss] = {
    "non_saturating": g_non_saturating, "minimax": g_minimax, "hinge": g_critic,
    "least_squares": g_least_squares, "wasserstein": g_critic, "relativistic": g_relativistic,
}
G_LOSS_KINDS = tuple(G_LOSSES)
D_LOSS_KINDS = tuple(D_LOSSES)


def generator_loss(fake_logits: jax.Array, *, kind: str = "non_saturating",
                   real_out: jax.Array | None = None) -> jax.Array:
  """G's loss on D's outputs for G(z), by name (see ``G_LOSSES``); ``real_out``: D's
  outputs on data, for the losses that read them."""
  if kind not in G_LOSSES:
    raise ValueError(f"Unknown generator loss kind {kind!r}; use one of {G_LOSS_KINDS}.")
  return call_g_loss(G_LOSSES[kind], fake_logits, real_out)


def takes_real(g_loss: Callable) -> bool:
  """Whether a G loss reads D's outputs on data: its signature has a ``real_out`` parameter."""
  try:
    return "real_out" in inspect.signature(g_loss).parameters
  except (TypeError, ValueError):
    return False


def takes_cond(loss: Callable) -> bool:
  """Whether a D or G loss reads the real minibatch's condition: its signature has ``cond``."""
  try:
    return "cond" in inspect.signature(loss).parameters
  except (TypeError, ValueError):
    return False


def call_d_loss(d_loss: Callable, real_out: jax.Array, fake_out: jax.Array, *,
                real_label: jax.Array, cond: jax.Array | None = None) -> jax.Array:
  """``d_loss(real_out, fake_out, real_label=...)``, with ``cond=cond`` for a loss that takes
  it (which then needs the data's condition)."""
  if not takes_cond(d_loss):
    return d_loss(real_out, fake_out, real_label=real_label)
  if cond is None:
    raise ValueError(f"The D loss {d_loss!r} reads the data's condition (cond), but the real "
                     f"minibatch has none; give batches as pairs (x, cond).")
  return d_loss(real_out, fake_out, real_label=real_label, cond=cond)


def call_g_loss(g_loss: Callable, fake_out: jax.Array, real_out: jax.Array | None,
                cond: jax.Array | None = None) -> jax.Array:
  """``g_loss(fake_out)``, or ``g_loss(fake_out, real_out=real_out)`` for a loss that takes
  it (which then needs ``real_out``), with ``cond=cond`` (that data's condition) for a loss
  that also takes it."""
  if not takes_real(g_loss):
    return g_loss(fake_out)
  if real_out is None:
    raise ValueError(f"The G loss {g_loss!r} reads D's outputs on data (real_out), but none "
                     f"were given; pass real_out (g_step: real_batch=...).")
  if not takes_cond(g_loss):
    return g_loss(fake_out, real_out=real_out)
  if cond is None:
    raise ValueError(f"The G loss {g_loss!r} reads the data's condition (cond), but the real "
                     f"minibatch has none; give batches as pairs (x, cond).")
  return g_loss(fake_out, real_out=real_out, cond=cond)


# --- Losses that also read D's features ---------------------------------------


def _logit_and_features(out, where: str) -> tuple[jax.Array, jax.Array]:
  if not (isinstance(out, dict) and {"logit", "features"} <= set(out)):
    got = jax.tree.map(lambda o: tuple(o.shape), out)
    raise ValueError(f"{where} reads D's outputs as {{'logit': [m], 'features': [m, h]}}, but "
                     f"D gave {got}; build D with features_out=True (MaxoutDiscriminator) or "
                     f"return that dict from a D of your own.")
  return out["logit"], out["features"]


@dataclasses.dataclass(frozen=True)
class OnLogit:
  """A D loss of logits (``base``, e.g. ``discriminator_loss``), for a D whose outputs are
  ``{"logit": [m], "features": [m, h]}``."""

  base: DLoss

  def __call__(self, real_out, fake_out, *, real_label):
    real, _ = _logit_and_features(real_out, "OnLogit")
    fake, _ = _logit_and_features(fake_out, "OnLogit")
    return self.base(real, fake, real_label=real_label)


@dataclasses.dataclass(frozen=True)
class WithFeatureMatching:
  """G's loss ``base`` on D's logits plus ``weight`` * ||mean f(G(z)) - mean f(x)||^2, the
  squared distance between the minibatch means of D's last hidden features on samples and
  on data (feature matching, Salimans et al. 2016, here as a term beside the usual loss).
  A G that draws some kind of example too often or too rarely moves its mean features away
  from the data's. D's outputs: ``{"logit": [m], "features": [m, h]}`` (``features_out``)."""

  base: GLoss
  weight: float

  def __post_init__(self):
    if not (isinstance(self.weight, (int, float)) and self.weight >= 0):
      raise ValueError(f"WithFeatureMatching.weight is {self.weight!r}; it must be a number "
                       f">= 0.")

  def __call__(self, fake_out, *, real_out):
    fake, fake_f = _logit_and_features(fake_out, "WithFeatureMatching")
    real, real_f = _logit_and_features(real_out, "WithFeatureMatching")
    gap = jnp.mean(fake_f, axis=0) - jnp.mean(real_f, axis=0)
    return call_g_loss(self.base, fake, real) + self.weight * jnp.sum(jnp.square(gap))


# --- Regularisers of D --------------------------------------------------------


def _input_grad_sq_norms(d_fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """||dD(x_i)/dx_i||^2 per example [m] (D's outputs are per-example, so one VJP serves)."""
  grads = jax.grad(lambda v: jnp.sum(d_fn(v)))(x)
  return jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1).astype(jnp.float32)), axis=1)


@dataclasses.dataclass(frozen=True)
class R1:
  """R1 penalty on real data (Mescheder et al. 2018): gamma / 2 * mean ||grad_x D(x)||^2."""

  gamma: float

  def __post_init__(self):
    if not (isinstance(self.gamma, (int, float)) and self.gamma >= 0):
      raise ValueError(f"R1.gamma is {self.gamma!r}; it must be a number >= 0.")

  def __call__(self, d_fn, real, fake, rng):
    del fake, rng
    return 0.5 * self.gamma * jnp.mean(_input_grad_sq_norms(d_fn, real))


@dataclasses.dataclass(frozen=True)
class GradientPenalty:
  """WGAN-GP (Gulrajani et al. 2017): weight * mean (||grad D(x_hat)|| - 1)^2.

  x_hat = e x + (1 - e) G(z), e ~ U(0, 1) per example, drawn from ``rng``.
  """

  weight: float

  def __post_init__(self):
    if not (isinstance(self.weight, (int, float)) and self.weight >= 0):
      raise ValueError(f"GradientPenalty.weight is {self.weight!r}; it must be a number >= 0.")

  def __call__(self, d_fn, real, fake, rng):
    e = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    x_hat = e * real + (1.0 - e) * fake
    # sqrt of a sum of squares: finite gradient away from a zero input gradient.
    norms = jnp.sqrt(_input_grad_sq_norms(d_fn, x_hat) + 1e-12)
    return self.weight * jnp.mean(jnp.square(norms - 1.0))


# --- Resolving names and choices ---------------------------------------------

LossSpec = str | Callable | tuple


def _accepts(fn: Callable, num_positional: int, *keywords: str) -> bool:
  try:
    sig = inspect.signature(fn)
  except (TypeError, ValueError):  # builtins without a signature: trust the caller
    return True
  try:
    args = [0.0] * num_positional
    sig.bind(*args, **{k: 1.0 for k in keywords})
  except TypeError:
    return False
  return True


def resolve(spec: LossSpec, which: str) -> tuple[Callable, ...]:
  """The loss functions a spec field names: a name, a callable, or a tuple of them (choices).

  ``which``: ``"d"`` or ``"g"``. Raises ValueError naming the problem.
  """
  table = D_LOSSES if which == "d" else G_LOSSES
  field = f"GAN.{which}_loss"
  items = spec if isinstance(spec, tuple) else (spec,)
  if not items:
    raise ValueError(f"{field} is an empty tuple; give a loss name, a callable or a tuple of them.")
  fns = []
  for item in items:
    if isinstance(item, str):
      if item not in table:
        raise ValueError(f"{field} names {item!r}; use one of {tuple(table)} or a callable.")
      fns.append(table[item])
    elif callable(item):
      ok = (_accepts(item, 2, "real_label", *("cond",) * takes_cond(item)) if which == "d" else
            _accepts(item, 1, *("real_out",) * takes_real(item), *("cond",) * takes_cond(item))
            and (takes_real(item) or not takes_cond(item)))
      if not ok:
        sig = ("d_loss(real_out, fake_out, *, real_label[, cond]) -> scalar" if which == "d" else
               "g_loss(fake_out) -> scalar or g_loss(fake_out, *, real_out[, cond]) -> scalar")
        raise ValueError(f"{field} is {item!r}, which cannot be called as {sig}; give it that "
                         f"signature (see gan_jax.losses).")
      fns.append(item)
    else:
      raise ValueError(f"{field} is {item!r}; give a loss name, a callable or a tuple of them.")
  return tuple(fns)


def choose(fns: tuple[Callable, ...], index: jax.Array, *args, **kwargs) -> jax.Array:
  """``fns[index](*args, **kwargs)``; one function is called directly, several by ``lax.switch``."""
  if len(fns) == 1:
    return fns[0](*args, **kwargs)
  branches = [lambda a, f=f: f(*a, **kwargs) for f in fns]
  return jax.lax.switch(jnp.clip(index, 0, len(fns) - 1), branches, args)


def value_function(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Minibatch estimate of V(D, G) = E log D(x) + E log(1 - D(G(z))) (eq. 1), in nats."""
  return (jnp.mean(jax.nn.log_sigmoid(real_logits)) +
          jnp.mean(jax.nn.log_sigmoid(-fake_logits)))


# --- Theory helpers (Proposition 1, Theorem 1). Densities are arrays on a grid. ---

def optimal_discriminator(p_data: jax.Array, p_g: jax.Array) -> jax.Array:
  """D*_G(x) = p_data(x) / (p_data(x) + p_g(x)) (Proposition 1); 1/2 where both vanish."""
  total = p_data + p_g
  return jnp.where(total > 0, p_data / jnp.where(total > 0, total, 1.0), 0.5)


def jensen_shannon(p: np.ndarray, q: np.ndarray, dx: float) -> float:
  """JSD(p || q) in nats of two densities sampled on a uniform grid of spacing ``dx``."""
  p = np.asarray(p, np.float64)
  q = np.asarray(q, np.float64)
  m = 0.5 * (p + q)

  def kl(a, b):
    mask = a > 0
    return float(np.sum(a[mask] * np.log(a[mask] / b[mask])) * dx)

  return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def optimal_value(p_data: np.ndarray, p_g: np.ndarray, dx: float) -> float:
  """C(G) = max_D V(D, G) = -log 4 + 2 JSD(p_data || p_g) (Theorem 1's identity)."""
  return -np.log(4.0) + 2.0 * jensen_shannon(p_data, p_g, dx)
