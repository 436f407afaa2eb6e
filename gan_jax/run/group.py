"""A group of replicas during training, as data: each replica's config, workdir,
checkpoints and memory (``Run``), and what the group shares across the loop (``Group``:
the spec, the states on the devices, the step). ``open_group`` restores it from the
workdirs' newest intact checkpoints, or starts it."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any

import jax

from gan_jax import kernels as kernels_lib
from gan_jax.errors import UserError
from gan_jax.loop import TrainLoop
from gan_jax.run import build, checkpoint, sweep
from gan_jax.run.experiment import Context, Data, Experiment, Outputs
from gan_jax.run.recorder import Recorder
from gan_jax.run.selection import Selection
from gan_jax.state import GAN, GANState, set_hparams

Config = Any  # an ml_collections.ConfigDict, whose values the schema has checked
SELECTED = "selected"  # the memory key of the best model so far


def devices_for(config: Config) -> list[Any]:
  """The devices a config trains on: every process's with pmap/shard_map, else one."""
  if config.get("parallel", "pmap") == "none" and jax.process_count() > 1:
    raise UserError(f"config.parallel='none' trains on one device, but this is a run of "
                    f"{jax.process_count()} processes; use 'pmap' or 'shard_map' to span them.")
  return jax.devices() if config.get("parallel", "pmap") != "none" else jax.local_devices()[:1]


def chunk_length(config: Config) -> int:
  """Iterations per compiled call: every log, eval and checkpoint falls on a boundary."""
  return math.gcd(config.get("steps_per_call", 500), config.log_every, config.eval_every,
                  config.get("eval_early_every", 0),
                  config.checkpoint_every)


def evaluates_at(config: Config, step: int) -> bool:
  """Whether an evaluation falls at ``step``: every ``eval_every`` steps, and every
  ``eval_early_every`` steps up to ``eval_early_until`` (denser early, sparser late)."""
  early = config.get("eval_early_every", 0)
  return step % config.eval_every == 0 or bool(
      early and step <= config.get("eval_early_until", 0) and step % early == 0)


def prepare_workdir(workdir: str) -> None:
  """Create ``workdir`` and make sure files can be written there."""
  probe = os.path.join(workdir, f".write_test_{os.getpid()}")
  try:
    os.makedirs(workdir, exist_ok=True)
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise UserError(f"The workdir {workdir!r} cannot be written ({e.strerror}: "
                    f"{e.filename or workdir}); pass a --workdir where this user may create "
                    f"files.") from e



@dataclasses.dataclass
class Run:
  """One replica of a group: its config, where it writes, its checkpoints and memory."""

  name: str
  config: Config
  workdir: str
  ckpt: checkpoint.Checkpointer
  best: checkpoint.Checkpointer | None = None  # the model selected on validation
  recorder: Recorder | None = None  # metrics.jsonl and TensorBoard (process 0)
  memory: dict[str, Any] = dataclasses.field(default_factory=dict)
  row: dict[str, Any] = dataclasses.field(default_factory=dict)  # this chunk's metrics row
  like: GANState | None = None  # its initial state: what its checkpoints restore into
  fresh: tuple[GANState, dict] | None = None  # its state at step 0, after the warm-up

  def __post_init__(self):
    self.root = jax.random.key(self.config.seed)
    self.label = f"[{self.name}] " if self.name else ""
    self.out = Outputs(self.workdir, self.label)

  def close(self) -> None:
    for closeable in (self.recorder, self.best, self.ckpt):
      if closeable is not None:
        closeable.close()


@dataclasses.dataclass
class Group:
  """A group's replicas during training: what lives across the loop."""

  exp: Experiment
  runs: list[Run]
  devices: tuple[Any, ...]
  data: Data
  gan: GAN
  kernels: str
  selection: Selection | None
  step: int = 0
  rollbacks: int = 0
  dstate: Any = None  # the replicas' stacked states, on the devices
  ddata: Any = None
  pending: list[list[dict]] = dataclasses.field(default_factory=list)  # metrics since the log
  evaluated: bool = False  # this step's rows hold an evaluation
  new_best: list[int] = dataclasses.field(default_factory=list)  # replicas whose best is now
  clock: dict[str, float] = dataclasses.field(default_factory=dict)  # start, last log, its step
  _loops: dict[int, TrainLoop] = dataclasses.field(default_factory=dict)
  _hosts: tuple[int, list[GANState]] | None = None

  @property
  def config(self) -> Config:
    return self.runs[0].config

  @property
  def total(self) -> int:
    return self.config.num_train_steps

  def loop(self, length: int | None = None) -> TrainLoop:
    """The compiled chunk of ``length`` iterations (default: the full chunk)."""
    length = length or chunk_length(self.config)
    if length not in self._loops:  # a final partial chunk compiles once more
      every = self.config.gan.get("grad_norms_every", 0)
      self._loops[length] = TrainLoop(
          self.gan, self.data.source, global_batch=self.config.batch_size,
          steps_per_call=length, parallel=self.config.get("parallel", "pmap"),
          devices=self.devices, vmapped=True, kernels=self.kernels,
          norms_every=every if every and length % every == 0 else length)
    return self._loops[length]

  def put(self, states: list[GANState]) -> Any:
    self._hosts = None
    return self.loop().put_state(sweep.stack(states))

  def hosts(self) -> list[GANState]:
    """Host copies of the replicas' states at this step (made once per step)."""
    if self._hosts is None or self._hosts[0] != self.step:
      host = checkpoint.host_copy(self.loop().get_state(self.dstate))
      self._hosts = (self.step, [sweep.unstack(host, i) for i in range(len(self.runs))])
    return self._hosts[1]

  def context(self, i: int, **fields: Any) -> Context:
    """What a hook sees of replica i (``fields`` override, e.g. ``state``)."""
    run = self.runs[i]
    return Context(**{"index": i, "config": run.config, "gan": self.gan, "root": run.root,
                      "kernels": self.kernels, "memory": run.memory, "out": run.out,
                      "step": self.step, "rows": run.recorder.rows if run.recorder else [],
                      **fields})


class Misaligned(Exception):
  """The replicas of a group were checkpointed at different steps."""


def open_group(exp: Experiment, runs: list[Run], devices: tuple[Any, ...]) -> Group:
  """The group at its newest checkpoint (or its start), placed on the devices."""
  data = exp.load_data()
  selection = exp.selection()
  g = Group(exp, runs, devices, data, exp.make_gan(data),
            kernels_lib.for_devices(runs[0].config.get("kernels", "auto"), devices),
            None if selection is None else Selection(*selection))
  for i, run in enumerate(runs):
    run.like = exp.initial_state(g.context(i))
  states = restore(g, announce=True)
  starts = {int(s.step) for s in states}
  if len(starts) > 1:
    raise Misaligned()
  g.step = starts.pop()
  for run in runs:
    if g.selection:  # every process: adopting the best is a collective act
      run.best = checkpoint.Checkpointer(run.workdir, keep=1, subdir=checkpoint.BEST)
      _finish_adoption(run)
    if is_main():
      run.recorder = Recorder(run.workdir, g.step)
      run.out.tensorboard = run.recorder.tensorboard
      with open(run.out.path("config.json"), "w") as f:
        f.write(run.config.to_json_best_effort(indent=2, sort_keys=True))
  g.dstate, g.ddata = g.put(states), g.loop().put_data(data.array)
  g.clock = {"start": time.time(), "time": time.time(), "step": g.step}
  return g


def _finish_adoption(run: Run) -> None:
  """Copy the selected model into ``best/`` again if a crash or a full disk cut the copy
  short: the restored memory names it, and its checkpoint is still in ``checkpoints/``
  (the step a run resumes from, or a later one; never removed before the copy)."""
  chosen, best = run.memory.get(SELECTED), run.best
  if not chosen or best is None or best.all_steps() == [chosen["step"]]:
    return
  if chosen["step"] not in run.ckpt.all_steps():
    say(f"warning: {run.label}the model selected at step {chosen['step']} is in neither "
        f"{best.directory} nor {run.ckpt.directory}; the next evaluation selects again.")
    run.memory.pop(SELECTED)
    return
  best.adopt(run.ckpt, chosen["step"])
  say(f"{run.label}the copy of the model selected at step {chosen['step']} into "
      f"{best.directory} had not finished; it was made again.")


def restore(g: Group, announce: bool = False) -> list[GANState]:
  """Each replica's newest intact checkpoint, else its fresh state; sets its memory."""
  states = []
  for i, run in enumerate(g.runs):
    assert run.like is not None  # set by open_group
    found = run.ckpt.restore_latest_valid(run.like, report=say)
    if found is None:
      state, memory = fresh(g, i)
    else:
      state, meta = found
      state = _this_runs_rates(g.gan, state, run.config)
      memory = meta.get("memory", {})
      g.rollbacks = max(g.rollbacks, int(meta.get("rollbacks", 0)))
      if announce:
        say(f"Resuming {run.label}from the checkpoint at step {int(state.step)} in "
             f"{run.ckpt.directory}")
    run.memory = json.loads(json.dumps(memory))  # a copy the run may change
    states.append(state)
  return states


def fresh(g: Group, i: int) -> tuple[GANState, dict]:
  """Replica i at step 0: its initial state after the experiment's warm-up (made once)."""
  run = g.runs[i]
  if run.fresh is None:
    ctx = g.context(i, state=run.like, memory={}, step=0)
    run.fresh = (g.exp.start(ctx), ctx.memory)
  return run.fresh


def _this_runs_rates(gan: GAN, state: GANState, config: Config) -> GANState:
  """A restored state with this launch's learning rates (they may change between launches)."""
  hp = build.replica_hparams(config)
  return set_hparams(gan, state, {k: hp[k] for k in ("d_learning_rate", "g_learning_rate")})


def is_main() -> bool:
  return jax.process_index() == 0


def say(message: str) -> None:
  """A line on the console of process 0."""
  if is_main():
    print(message, flush=True)
