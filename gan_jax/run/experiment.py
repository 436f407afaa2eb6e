"""What differs between experiments, behind one small interface.

The driver (``gan_jax.run.train``) runs every experiment the same way: schema check,
workdir lock, restore, the scanned training chunks, logs, evaluations, checkpoints,
stop signals and divergence handling, for one run or a vmapped group of replicas. An
``Experiment`` supplies only what is its own:

- ``fields`` / ``resumable``: its config sections beyond ``schema.COMMON``, and which
  of its fields may change between launches of one workdir; ``check`` for rules that
  tie fields together;
- ``load_data`` and ``make_gan``: where real minibatches come from (``Data``) and the
  group's GAN spec;
- ``initial_state`` and ``start``: a replica's initialised state, and what a run that
  starts from scratch does before step 0 (a warm-up; it may fill ``ctx.memory``);
- ``observe``: each chunk's per-step metrics, folded into ``ctx.memory`` (a small JSON
  dict checkpointed with the state, so a resumed run continues it exactly);
- ``evaluate``: scalars for the metrics row, and pictures, at each evaluation;
- ``selection``: the validation metric by which the driver keeps the best model so far
  in ``checkpoints/best``;
- ``plot`` / ``finish`` / ``summarize``: curves, a replica's final results, a sweep's
  outputs across replicas; ``evaluate_checkpoint``: ``launch.py --mode=eval``.

Every per-replica hook takes one ``Context``. A config names its experiment by
``config.experiment`` (``launch.py`` resolves the name).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from gan_jax import loop as loop_lib, steps
from gan_jax.errors import UserError
from gan_jax.run import schema, sweep
from gan_jax.run.recorder import read_rows
from gan_jax.run.selection import Selection
from gan_jax.state import GAN, GANState


@dataclasses.dataclass
class Data:
  """Real data for training: ``source`` draws minibatches on device from ``array``
  (None for a sampler); ``batches_per_epoch`` (None: no epochs) sets epoch-based
  schedules and the epoch column of the logs; ``dim`` is one example's size."""

  source: loop_lib.Source
  dim: int
  array: Any = None
  batches_per_epoch: int | None = None


@dataclasses.dataclass
class Outputs:
  """Where a replica writes: its workdir, its label in the console (``[name] `` in a
  sweep) and its TensorBoard writer (process 0 only)."""

  workdir: str
  label: str = ""
  tensorboard: Any = None

  def path(self, *parts: str) -> str:
    return os.path.join(self.workdir, *parts)

  def image(self, tag: str, image: np.ndarray, step: int) -> None:
    """A uint8 [H, W, C] picture into TensorBoard."""
    if self.tensorboard is not None:
      self.tensorboard.add_image(tag, image, step, dataformats="HWC")


@dataclasses.dataclass
class Context:
  """What a hook sees of one replica.

  ``config``: its config; ``gan``: the group's spec; ``root``: ``jax.random.key(seed)``
  (``fold_in(root, n)`` for the experiment's own keys; the driver trains with n = 1); ``kernels``:
  the kernel set its steps use; ``memory``: its JSON dict, checkpointed with the state;
  ``out``: where it writes; ``step``: the iteration the hook runs at; ``state``: a host
  copy of the state then; ``rows``: its metrics rows so far (process 0).
  """

  index: int
  config: Any
  gan: GAN
  root: jax.Array
  kernels: str
  memory: dict[str, Any]
  out: Outputs
  step: int = 0
  state: GANState | None = None
  rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)

  def generate(self, z: jax.Array, *, ema: bool | None = None, cond: Any = None
               ) -> np.ndarray:
    """Samples of ``state``'s generator for noise ``z`` (and a conditional G's ``cond``;
    ``generate`` below)."""
    assert self.state is not None
    return generate(self.gan, self.state, z, ema=ema, cond=cond, kernels=self.kernels)


_generate = jax.jit(steps.generate, static_argnums=0, static_argnames=("ema", "kernels"))
_estimate = jax.jit(steps.estimate_collections, static_argnums=0,
                    static_argnames=("ema", "num_batches", "batch_size", "kernels"))


def generate(gan: GAN, state: GANState, z: jax.Array, *, ema: bool | None = None,
             cond: Any = None, batch: int = 2_000, kernels: str = "plain") -> np.ndarray:
  """G(z) in inference mode for noise ``z`` [n, latent] (and a conditional G's ``cond``
  [n, ...]), as float32 NumPy [n, features], in compiled batches. ``ema``: as
  ``gan_jax.generate`` (None: the EMA when the state keeps one); an EMA of a G with
  BatchNorm samples with statistics re-estimated for the EMA's weights (a conditional one
  with the conditions of the first ``batch`` samples).
  """
  ema = state.ema_params is not None if ema is None else ema
  cols = None
  part = lambda i: None if cond is None else cond[i:i + batch]  # noqa: E731
  if ema and state.g.collections:
    n = min(batch, len(z)) if cond is not None else 256
    cols = _estimate(gan, state, jax.random.key(0), ema=True, batch_size=n, cond=part(0),
                     kernels=kernels)
  return np.concatenate([np.asarray(_generate(gan, state, z[i:i + batch], ema=ema,
                                              collections=cols, cond=part(i), kernels=kernels))
                         for i in range(0, len(z), batch)])


class Experiment:
  """The base of every experiment; one instance serves one group of configs.

  ``configs``: the replicas trained as one program (one config for a single run); they
  differ only in ``sweep.VMAPPABLE`` fields, so ``self.config`` (the first) holds
  everything they share.
  """

  fields: dict[str, Any] = {}  # config sections beyond schema.COMMON
  resumable: tuple[str, ...] = ()  # field prefixes that may change between launches

  def __init__(self, configs: Sequence[Any]):
    self.configs = list(configs)
    self.config = self.configs[0]

  @classmethod
  def schema(cls) -> dict[str, Any]:
    return {**schema.COMMON, **cls.fields}

  @classmethod
  def check(cls, config: Any, num_devices: int) -> None:
    """Refuse a config that cannot run (one ``UserError`` naming the field and the fix)."""
    schema.check(config, num_devices, cls.schema())

  def load_data(self) -> Data:
    raise NotImplementedError

  def make_gan(self, data: Data) -> GAN:
    raise NotImplementedError

  def initial_state(self, ctx: Context) -> GANState:
    """The replica's initialised state; also the structure its checkpoints are restored
    into, so it should be cheap."""
    raise NotImplementedError

  def start(self, ctx: Context) -> GANState:
    """A run from scratch: the state at step 0, from ``ctx.state`` (the initial state)."""
    assert ctx.state is not None
    return ctx.state

  def observe(self, ctx: Context, metrics: dict[str, np.ndarray]) -> None:
    """Per-step metrics (``[n]`` each) of iterations ``ctx.step - n + 1 ... ctx.step``."""

  def evaluate(self, ctx: Context) -> dict[str, Any]:
    """The evaluation at ``ctx.step`` (``ctx.state``: host arrays); returns row fields."""
    return {}

  def selection(self) -> Selection | None:
    """The validation metric by which the driver keeps the best model so far in
    ``checkpoints/best`` (raw G or, under ``ema_<key>``, its EMA), or None."""
    return None

  def plot(self, ctx: Context) -> None:
    """Curves of ``ctx.rows``: after the first evaluation, then after an evaluation at most
    every ``config.plot_every_seconds``, and after the last step."""

  def finish(self, ctx: Context) -> None:
    """The replica reached num_train_steps: write its final results."""

  @classmethod
  def evaluate_checkpoint(cls, config: Any, workdir: str, which: str) -> dict[str, Any]:
    """``launch.py --mode=eval``: score the checkpoint ``which`` (best, latest or a step) of
    ``workdir``. The default: this experiment scores itself while it trains."""
    raise UserError(f"The {config.get('experiment')} experiment scores itself while it trains "
                    f"(see metrics.jsonl and results.json in the workdir); it has no "
                    f"--mode=eval. Run it with --mode=train (the default).")

  @classmethod
  def summarize(cls, replicas: Sequence[Any], workdir: str) -> None:
    """A sweep's outputs, from its finished replicas' workdirs: sweep.csv, one row
    per replica (its swept values and its final metrics row)."""
    sweep.write_summary(os.path.join(workdir, "sweep.csv"),
                        [final_row(r, os.path.join(workdir, r.name)) for r in replicas])


def final_row(replica: Any, workdir: str) -> dict:
  """A finished replica's swept values and the scalars of its last metrics row."""
  final = read_rows(os.path.join(workdir, "metrics.jsonl"))[-1]
  return {"replica": replica.name, **replica.values,
          **{k: v for k, v in final.items() if not isinstance(v, (list, dict))}}



def write_json(path: str, obj: Any) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)
