"""Many training iterations per compiled call: a ``lax.scan`` over ``train_step``.

The training data live on the device(s); each iteration draws its minibatches
and noise on device, so nothing is copied from the host per step. One
per-device function runs under ``jax.pmap`` (default), under ``jax.shard_map``
over a 1-D mesh, or under plain ``jax.jit`` on one device.

Randomness is a pure function of (run key, step): the global minibatch of step
s and its noise are the same whatever the device count, and device d takes
rows ``[d * m, (d + 1) * m)`` of them (m = global batch / devices). Only the
dropout masks differ per device. So a run is reproducible from its seed, a
resumed run continues exactly, and 1 device and N devices compute the same
update when dropout is off.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from gan_jax import kernels as kernels_lib, steps
from gan_jax.state import GAN, GANState, sample_latent


@jax.jit
def _drop_device_axis(tree: Any) -> Any:
  return jax.tree.map(lambda x: x[0], tree)


AXIS = "batch"
PARALLEL_MODES = ("pmap", "shard_map", "none")
Metrics = dict[str, jax.Array]


# --- Shuffling without a stored permutation --------------------------------


def _mix32(x: jax.Array) -> jax.Array:
  """A bijective avalanche hash on uint32 (MurmurHash3's finaliser)."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x85EBCA6B)
  x = x ^ (x >> 13)
  x = x * jnp.uint32(0xC2B2AE35)
  return x ^ (x >> 16)


def permute_index(seed: jax.Array, epoch: jax.Array, position: jax.Array, n: int,
                  rounds: int = 32) -> jax.Array:
  """Position -> example index under a pseudorandom permutation of range(n) per epoch.

  A swap-or-not shuffle: each round pairs x with (K - x) mod n and swaps when
  a keyed hash bit of the pair says so. Every round is an involution, so the
  map is a bijection for any n; it costs O(rounds) integer ops per index and
  needs no [n] permutation array, so a step can shuffle its own minibatch.

  Args:
    seed: uint32 scalar.
    epoch, position: int32 arrays of the same shape (position in [0, n)).
    n: number of examples.
  """
  epoch_key = _mix32(seed ^ _mix32(epoch.astype(jnp.uint32) + jnp.uint32(0x9E3779B9)))
  n32 = jnp.uint32(n)

  def round_fn(r, x):
    rk = _mix32(epoch_key + jnp.uint32(0x632BE5AB) * r.astype(jnp.uint32))
    partner = (rk % n32 + n32 - x) % n32
    hi = jnp.maximum(x, partner)
    flip = (_mix32(hi ^ _mix32(rk ^ jnp.uint32(0x5BD1E995))) & 1) == 1
    return jnp.where(flip, partner, x)

  return lax.fori_loop(0, rounds, round_fn, position.astype(jnp.uint32)).astype(jnp.int32)


class Source(Protocol):
  """Where real minibatches come from (static, hashable)."""

  def sample(self, data: Any, key: jax.Array, batch_index: jax.Array, offset: jax.Array,
             count: int, global_batch: int) -> jax.Array:
    """Rows [offset, offset + count) of global minibatch number ``batch_index``."""
    ...


def _as_batch(batch: Any) -> Any:
  """A sampled batch, its data read as floats: ``x``, or ``(x, cond)`` with ``cond`` as is."""
  if isinstance(batch, (tuple, list)):
    return (_to_float(batch[0]), batch[1])
  return _to_float(batch)


def _to_float(x: jax.Array) -> jax.Array:
  if x.dtype == jnp.uint8:  # images stored as bytes; pixels in [0, 1]
    return x.astype(jnp.float32) * (1.0 / 255.0)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"The training data has dtype {x.dtype}; give uint8 images (read as "
                     f"pixels in [0, 1]) or floating-point data scaled as G's outputs are.")
  return x.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class ArraySource:
  """A finite training set ``data`` ([N, F], uint8 or float) held on device, or a pair
  ``(data, cond)`` with one condition per example (e.g. class labels ``[N]``).

  Epochs of ``N // global_batch`` minibatches, each epoch a fresh permutation;
  every example is seen at most once per epoch (the remainder, a different one
  each epoch, is skipped). uint8 data are scaled to [0, 1].
  """

  num_examples: int
  shuffle_rounds: int = 32

  def batches_per_epoch(self, global_batch: int) -> int:
    return self.num_examples // global_batch

  def sample(self, data, key, batch_index, offset, count, global_batch):
    bpe = self.batches_per_epoch(global_batch)
    seed = jax.random.bits(key, (), jnp.uint32)
    epoch = batch_index // bpe
    position = (batch_index % bpe) * global_batch + offset + jnp.arange(count, dtype=jnp.int32)
    idx = permute_index(seed, jnp.broadcast_to(epoch, position.shape), position,
                        self.num_examples, self.shuffle_rounds)
    return _as_batch(jax.tree.map(lambda d: jnp.take(d, idx, axis=0), data))


@dataclasses.dataclass(frozen=True)
class SamplerSource:
  """An infinite source ``sample_fn(key, n) -> [n, F]`` or ``([n, F], cond [n, ...])`` (toy
  distributions); no data array.

  Each global minibatch is drawn whole from a key of its index and sliced, so
  the result does not depend on the device count.
  """

  sample_fn: Callable[[jax.Array, int], jax.Array]

  def sample(self, data, key, batch_index, offset, count, global_batch):
    full = _as_batch(self.sample_fn(jax.random.fold_in(key, batch_index), global_batch))
    return jax.tree.map(lambda b: lax.dynamic_slice_in_dim(b, offset, count, axis=0), full)


# --- The scanned chunk ------------------------------------------------------


def batch_split_error(global_batch: int, num_devices: int) -> str | None:
  """Why ``global_batch`` cannot be split over ``num_devices`` devices, or None."""
  if global_batch % num_devices == 0:
    return None
  return (f"{global_batch} does not divide over the {num_devices} devices used for data "
          f"parallelism: each device must get the same number of examples. Use a multiple of "
          f"{num_devices}")


def iteration_inputs(gan: GAN, source: Source, data: Any, key: jax.Array, step: jax.Array, *,
                     global_batch: int, device_index: jax.Array | int = 0, num_devices: int = 1
                     ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """What iteration ``step`` feeds ``train_step`` on one device: (real, noise, rng).

  real: ``[real_batches_per_step, m, F]``, noise: ``[noise_batches_per_step, m,
  latent]`` (rows ``device_index * m ...`` of the global batch, m = global_batch /
  num_devices), rng: this device's key for dropout. A pure function of (key,
  step), so any iteration can be replayed.
  """
  m = global_batch // num_devices
  offset = jnp.asarray(device_index, jnp.int32) * m
  data_key, noise_key, drop_key = (jax.random.fold_in(key, i) for i in range(3))
  nb, nz = gan.real_batches_per_step, gan.noise_batches_per_step
  real = jax.tree.map(lambda *b: jnp.stack(b), *[
      source.sample(data, data_key, step * nb + j, offset, m, global_batch) for j in range(nb)
  ])
  noise = sample_latent(gan, jax.random.fold_in(noise_key, step), (nz, global_batch))
  noise = lax.dynamic_slice_in_dim(noise, offset, m, axis=1)
  rng = jax.random.fold_in(jax.random.fold_in(drop_key, step), device_index)
  return real, noise, rng


def run_chunk(gan: GAN, source: Source, state: GANState, data: Any, key: jax.Array, *,
              num_steps: int, global_batch: int, device_index: jax.Array | int = 0,
              num_devices: int = 1, axis_name: str | None = None, kernels: str = "plain",
              norms_every: int = 1) -> tuple[GANState, Metrics]:
  """``num_steps`` training iterations from ``state`` on one device's share.

  Pure and per-device: under pmap/shard_map pass ``axis_name`` and this
  device's index; alone, leave the defaults. ``kernels``: as ``train_step``'s.
  ``norms_every`` (with ``gan.grad_norms``; it must divide ``num_steps``): the gradient
  norms are measured at every ``norms_every``-th iteration only, the last of each group;
  the others run the step without them. The update is the same either way.

  Returns:
    The new state and metrics stacked over the steps (``[num_steps]`` each; the norms
    ``[num_steps // norms_every]``, of iterations ``norms_every``, ``2 * norms_every``, ...).
  """

  def body(gan: GAN):
    def one(state, _):
      real, noise, rng = iteration_inputs(gan, source, data, key, state.step,
                                          global_batch=global_batch, device_index=device_index,
                                          num_devices=num_devices)
      return steps.train_step(gan, state, real, rng, axis_name=axis_name, noise=noise,
                              kernels=kernels)
    return one

  if not gan.grad_norms or norms_every == 1:
    return lax.scan(body(gan), state, None, length=num_steps)
  if norms_every < 1 or num_steps % norms_every:
    raise ValueError(f"norms_every is {norms_every}; it must be >= 1 and divide num_steps "
                     f"({num_steps}).")
  quiet = dataclasses.replace(gan, grad_norms=False)

  def group(state, _):  # norms_every - 1 iterations without the norms, then one with them
    state, stacked = lax.scan(body(quiet), state, None, length=norms_every - 1)
    state, last = body(gan)(state, None)
    return state, (stacked, last)

  state, (stacked, last) = lax.scan(group, state, None, length=num_steps // norms_every)
  metrics = {k: jnp.concatenate([v, last[k][:, None]], axis=1).reshape(-1)
             for k, v in stacked.items()}
  return state, {**last, **metrics}


@dataclasses.dataclass(frozen=True)
class TrainLoop:
  """A compiled, state-donating call that runs ``steps_per_call`` iterations.

  Usage::

    loop = TrainLoop(gan, ArraySource(len(x)), global_batch=100, steps_per_call=500)
    dstate, ddata = loop.put_state(state), loop.put_data(x)
    dstate, metrics = loop(dstate, ddata, jax.random.key(seed))   # metrics: [500] each
    state = loop.get_state(dstate)

  ``parallel``: ``"pmap"`` (replicas over ``devices``), ``"shard_map"`` (the same
  per-device function over a 1-D mesh of ``devices``) or ``"none"`` (jit on
  the first device). ``kernels``: ``"auto"`` (the CPU rewrites when ``devices``
  are CPUs, the plain kernels elsewhere), ``"plain"`` or ``"cpu"``
  (``gan_jax.kernels``). ``norms_every`` (dividing ``steps_per_call``): the gradient
  norms at every ``norms_every``-th iteration only (``run_chunk``); ``steps_per_call``
  measures them once per call, at its last iteration.

  Sweeps: with ``vmapped=True`` the state and the key passed to each call carry
  a leading replica axis and the chunk is ``jax.vmap``-ed over it, inside the
  data parallelism: R GANs of one spec train as one program, each with its own
  hyperparameters from its state (``GANState.hparams``, the optimizers'
  injected learning rates). ``devices`` defaults to all devices of all processes
  (``jax.devices()``): in a multi-process run each process places and feeds
  its own local devices, and the collectives span every process.
  """

  gan: GAN
  source: Source
  global_batch: int
  steps_per_call: int
  parallel: str = "pmap"
  devices: tuple[Any, ...] | None = None
  vmapped: bool = False
  kernels: str = "auto"
  norms_every: int = 1

  def __post_init__(self):
    if self.parallel not in PARALLEL_MODES:
      raise ValueError(f"parallel is {self.parallel!r}; use one of {PARALLEL_MODES}.")
    if self.global_batch < 1 or self.steps_per_call < 1:
      raise ValueError("global_batch and steps_per_call must be >= 1; got "
                       f"{self.global_batch} and {self.steps_per_call}.")
    kernels_lib.choose(self.kernels, "cpu")  # an unknown name is refused here
    if self.norms_every < 1 or self.steps_per_call % self.norms_every:
      raise ValueError(f"norms_every is {self.norms_every}; it must be >= 1 and divide "
                       f"steps_per_call ({self.steps_per_call}).")
    split = batch_split_error(self.global_batch, self.num_devices)
    if split:
      raise ValueError(f"The global batch size {split}.")

  @functools.cached_property
  def device_list(self) -> tuple[Any, ...]:
    if self.devices is not None:
      devices = tuple(self.devices)
    elif self.parallel == "none":
      devices = tuple(jax.local_devices())
    else:
      devices = tuple(jax.devices())
    return devices[:1] if self.parallel == "none" else devices

  @property
  def kernels_used(self) -> str:
    """The kernel set this loop compiles with: ``kernels`` resolved for its devices."""
    return kernels_lib.for_devices(self.kernels, self.device_list)

  @property
  def num_devices(self) -> int:
    return len(self.device_list)

  @functools.cached_property
  def mesh(self) -> Mesh:
    return Mesh(np.array(self.device_list), (AXIS,))

  def _chunk(self, device_index, num_devices, axis_name):
    """(state, data, key) -> (state, metrics) for this device's share."""
    kw: dict[str, Any] = dict(num_steps=self.steps_per_call, global_batch=self.global_batch,
              device_index=device_index, num_devices=num_devices, axis_name=axis_name,
              kernels=self.kernels_used, norms_every=self.norms_every)

    def chunk(state, data, key):
      return run_chunk(self.gan, self.source, state, data, key, **kw)
    if not self.vmapped:
      return chunk
    batched = jax.vmap(chunk, in_axes=(0, None, 0))

    def replicas(state, data, key):
      if key.shape[0] > 1:
        return batched(state, data, key)
      # A group of one runs unbatched: XLA:CPU's batched matmuls over a replica axis of 1
      # are slower than plain ones. The squeeze and expand are free reshapes.
      one = jax.tree.map(lambda x: x[0], (state, key))
      return jax.tree.map(lambda x: x[None], chunk(one[0], data, one[1]))
    return replicas

  @functools.cached_property
  def _compiled(self):
    n = self.num_devices
    if self.parallel == "none":
      return jax.jit(self._chunk(0, 1, None), donate_argnums=0)

    def per_device(state, data, key):
      return self._chunk(lax.axis_index(AXIS), n, AXIS)(state, data, key)
    if self.parallel == "pmap":
      return jax.pmap(per_device, axis_name=AXIS, in_axes=(0, 0, None),
                      donate_argnums=0, devices=self.device_list)
    # check_vma=False: the step averages its own gradients with lax.pmean, exactly
    # as under pmap. With varying-axis checks on, the gradient of a replicated
    # parameter would already arrive summed over devices and be reduced twice.
    return jax.jit(jax.shard_map(per_device, mesh=self.mesh, in_specs=(P(), P(), P()),
                                 out_specs=(P(), P()), check_vma=False), donate_argnums=0)

  def _put(self, tree):
    # Every process passes the same host values; each fills its own local devices.
    if self.parallel == "pmap":  # a leading axis of one row per device, as pmap wants
      n = self.num_devices
      stacked = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), tree)
      return jax.device_put(stacked, NamedSharding(self.mesh, P(AXIS)))
    if self.parallel == "shard_map":
      return jax.device_put(tree, NamedSharding(self.mesh, P()), may_alias=False)
    # A copy, never an alias: the loop donates what it is given.
    return jax.device_put(tree, self.device_list[0], may_alias=False)

  def put_state(self, state: GANState) -> GANState:
    """The state placed for this loop (replicated over the devices)."""
    return self._put(state)

  def put_data(self, data: Any) -> Any:
    """Training data placed on every device, once per run."""
    return self._put(data)

  def get_state(self, dstate: Any) -> Any:
    """One copy of the state (or any tree placed by this loop) on a device of this process."""
    if self.parallel == "pmap":  # [devices, ...]: the first row of this process's first shard
      firsts = jax.tree.map(lambda x: x.addressable_data(0), dstate)  # [1, ...] each, no program
      if jax.process_count() == 1:
        # One small single-device program drops the axis for the whole tree. Indexing each
        # leaf of the sharded tree would launch one program over all the devices per leaf:
        # dozens in flight, and on XLA:CPU a launch that waits for room in a device's queue
        # holds a thread of the pool that the collectives of the training program need.
        return _drop_device_axis(firsts)
      # In a multi-process run: host copies, sliced in NumPy. A computation here would run
      # on process 0 alone (it reads state for its logs, the others do not): the processes'
      # sequences of programs would differ and the next collective would wait forever.
      return jax.tree.map(lambda x: np.asarray(x)[0], firsts)
    if self.parallel == "shard_map":  # replicated: any local shard is the whole value
      return jax.tree.map(lambda x: x if x.is_fully_addressable else x.addressable_data(0),
                          dstate)
    return dstate

  def __call__(self, dstate: GANState, data: Any, key: jax.Array
               ) -> tuple[GANState, Metrics]:
    """Run ``steps_per_call`` iterations. ``dstate`` is donated: use the returned one.

    With ``vmapped``: the state has a leading replica axis R and ``key`` is ``[R]``
    keys; the metrics come back ``[R, steps_per_call]``.
    """
    dstate, metrics = self._compiled(dstate, data, key)
    return dstate, self.get_state(metrics)


def discriminator_steps(gan: GAN, state: GANState,
                        sample_real: Callable[[jax.Array, int], jax.Array], key: jax.Array, *,
                        num_steps: int, batch_size: int, kernels: str = "plain"
                        ) -> tuple[GANState, jax.Array]:
  """``num_steps`` D updates with G held fixed (Proposition 1's setting, or a warm-up
  that puts D ahead), real minibatches from ``sample_real(key, n)``; returns D's losses.

  Not jitted (so that it can run under ``jax.vmap`` over replicas' states);
  ``train_discriminator`` is its compiled form.
  """

  def body(state, i):
    k = jax.random.fold_in(key, i)
    real = sample_real(jax.random.fold_in(k, 0), batch_size)
    state, metrics = steps.d_step(gan, state, real, jax.random.fold_in(k, 1), kernels=kernels)
    return state, metrics["d_loss"]

  return lax.scan(body, state, jnp.arange(num_steps))


train_discriminator = jax.jit(discriminator_steps, static_argnums=(0, 2),
                              static_argnames=("num_steps", "batch_size", "kernels"))
