"""What differs between experiments, behind one small interface.

The driver (``gan_jax.run.train``) runs every experiment the same way: schema check,
workdir lock, restore, the scanned training chunks, logs, evaluations,
checkpoints, stop signals and divergence handling, for one run or a vmapped
group of replicas. An experiment supplies only what is its own, in one file:

- ``fields`` / ``resumable``: its config sections beyond ``schema.COMMON``, and
  which of its fields may change between launches of one workdir;
- ``load_data``: where real minibatches come from (``Data``);
- ``make_gan``: the GAN spec of its group of configs;
- ``initial_state`` / ``start``: replica i's initialised state, and what a run
  that starts from scratch does with it before step 0 (a warm-up), returning
  the ``memory`` it starts with;
- ``observe``: per-step metrics of each chunk, folded into ``memory`` (a small
  JSON dict checkpointed with the state, so a resumed run continues it exactly);
- ``evaluate``: scalars for the metrics row, and pictures, at each evaluation;
- ``selection``: the evaluation metric (never one of the test split) by which the
  driver keeps the best model so far in ``checkpoints/best``;
- ``plot`` / ``finish`` / ``summarize``: curves, a replica's final results, and a
  sweep's outputs across replicas.

The projects in ``projects/`` are experiments; a config names one by
``config.experiment`` (``launch.py`` resolves the name), or its own class as
``"package.module:ClassName"``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, NamedTuple, Sequence

import jax
import numpy as np

from gan_jax import loop as loop_lib, steps
from gan_jax.errors import UserError
from gan_jax.run import schema, sweep
from gan_jax.state import GAN, GANState

_generate = jax.jit(steps.generate, static_argnums=0, static_argnames=("ema", "kernels"))


def generate(gan: GAN, state: GANState, z: jax.Array, *, ema: bool | None = None,
             batch: int = 2_000, kernels: str = "plain") -> np.ndarray:
  """G(z) in inference mode for noise ``z`` [n, latent], as float32 NumPy [n, features], in
  compiled batches. ``ema``: as ``gan_jax.generate`` (None: the EMA when the state keeps one).
  """
  return np.concatenate([np.asarray(_generate(gan, state, z[i:i + batch], ema=ema,
                                              kernels=kernels))
                         for i in range(0, len(z), batch)])


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
  """Where replica i of a group writes: its workdir, its label in the console
  (``[name] `` in a sweep) and its TensorBoard writer (process 0 only)."""

  workdir: str
  label: str
  tensorboard: Any = None

  def path(self, *parts: str) -> str:
    return os.path.join(self.workdir, *parts)

  def image(self, tag: str, image: np.ndarray, step: int) -> None:
    """A uint8 [H, W, C] picture into TensorBoard."""
    if self.tensorboard is not None:
      self.tensorboard.add_image(tag, image, step, dataformats="HWC")


EMA_PREFIX = "ema_"  # metrics-row keys of the EMA generator: ema_parzen_ll, ...


class Selection(NamedTuple):
  """How the driver picks ``checkpoints/best`` from the metrics rows of evaluations."""
  key: str  # the metrics-row key of a validation metric (the EMA's is ``ema_<key>``)
  higher_is_better: bool
  # (key, higher is better) of a second validation metric on which the EMA of G must be
  # no worse than raw G at the same evaluation to be a candidate at all (None: no guard).
  ema_guard: tuple[str, bool] | None = None

  def candidate(self, row: dict[str, Any]) -> tuple[tuple[float, str] | None, str]:
    """The better of raw G ("raw") and its EMA ("ema") in one evaluation's metrics row, as
    (value, generator), or None when neither has a finite value; and why the EMA was left
    out, if it was ("" otherwise)."""
    def finite(k):
      return isinstance(row.get(k), (int, float)) and math.isfinite(row[k])

    key, ema = self.key, EMA_PREFIX + self.key
    found = [(row[key], "raw")] if finite(key) else []
    why = ""
    if finite(ema):
      if self.ema_guard is None:
        found.append((row[ema], "ema"))
      else:
        g, higher = self.ema_guard
        if finite(g) and finite(EMA_PREFIX + g) and (
            row[EMA_PREFIX + g] >= row[g] if higher else row[EMA_PREFIX + g] <= row[g]):
          found.append((row[ema], "ema"))
        else:
          why = (f"its {g} {row.get(EMA_PREFIX + g, math.nan):.4g} is worse than G's "
                 f"{row.get(g, math.nan):.4g}")
    if not found:
      return None, why
    return (max if self.higher_is_better else min)(found), why

  def improves(self, value: float, best: dict[str, Any] | None) -> bool:
    """Whether value beats the best so far (a ``memory["selected"]`` dict, or None)."""
    if best is None:
      return True
    return value > best["value"] if self.higher_is_better else value < best["value"]

  def update(self, best: dict[str, Any] | None, row: dict[str, Any], step: int
             ) -> tuple[dict[str, Any] | None, str]:
    """The new best after the evaluation ``row`` at ``step`` (a dict: metric, value,
    generator, step), or None when the best so far stands; and ``candidate``'s reason
    for leaving the EMA out ("" otherwise)."""
    found, why = self.candidate(row)
    if found is None or not self.improves(found[0], best):
      return None, why
    return {"metric": self.key, "value": found[0], "generator": found[1], "step": step}, why


def replay_selection(rows: Sequence[dict[str, Any]], selection: Selection
                     ) -> list[dict[str, Any] | None]:
  """The best model so far after each row, by ``selection``, as the driver keeps it:
  a dict (metric, value, generator, step) per row, None before the first candidate.
  Lets a finished run's rows be read under another selection rule."""
  best, out = None, []
  for row in rows:
    best = selection.update(best, row, row["step"])[0] or best
    out.append(best)
  return out


class Experiment:
  """The base of every experiment; one instance serves one group of configs.

  ``configs``: the replicas trained as one program (one config for a single run);
  they differ only in ``sweep.VMAPPABLE`` fields, so ``self.config`` (the first)
  holds everything they share.
  """

  fields: dict[str, Any] = {}  # config sections beyond schema.COMMON
  resumable: tuple[str, ...] = ()  # field prefixes that may change between launches

  def __init__(self, configs: Sequence[Any], kernels: str = "plain"):
    self.configs = list(configs)
    self.config = self.configs[0]
    self.kernels = kernels  # the kernel set the run's steps use (gan_jax.kernels)

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

  def initial_state(self, i: int, gan: GAN, data: Data, root: Any) -> GANState:
    """Replica i's initialised state (from its root key ``jax.random.key(seed)``); also the
    structure its checkpoints are restored into, so it should be cheap."""
    raise NotImplementedError

  def start(self, i: int, gan: GAN, state: GANState, root: Any) -> tuple[GANState, dict]:
    """A run from scratch: replica i's state at step 0 and its first memory (a JSON dict)."""
    return state, {}

  def observe(self, i: int, memory: dict, first_step: int, metrics: dict[str, np.ndarray]
              ) -> None:
    """Per-step metrics of iterations first_step + 1 ... (``[chunk]`` each), every chunk."""

  def evaluate(self, i: int, gan: GAN, state: GANState, memory: dict, out: Outputs,
               root: Any) -> dict[str, Any]:
    """Replica i's evaluation at ``state.step`` (host arrays); returns row fields."""
    return {}

  def selection(self) -> Selection | None:
    """The validation metric by which the driver keeps the best model so far in
    ``checkpoints/best`` (raw G or, under ``ema_<key>``, its EMA), or None."""
    return None

  def plot(self, i: int, rows: list[dict], memory: dict, out: Outputs) -> None:
    """Curves of replica i's metrics rows so far (after each evaluation)."""

  def finish(self, i: int, gan: GAN, state: GANState, memory: dict, rows: list[dict],
             out: Outputs, root: Any) -> None:
    """Replica i reached num_train_steps: write its final results."""

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


def read_rows(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def write_json(path: str, obj: Any) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)
