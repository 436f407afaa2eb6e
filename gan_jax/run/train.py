"""The one training driver: every experiment, one run or a sweep, into its workdir.

Data flow: config -> experiment (``gan_jax.run.experiment``) -> data, GAN spec and
initial states -> restored from the workdir's newest intact checkpoint when
there is one -> scanned training chunks of the replicas as one vmapped program
-> periodic actions (log, evaluate, record, checkpoint; CLU's
``periodic_actions`` style, run on chunk boundaries) -> final results. Only
process 0 writes logs, pictures and metrics.

CLU itself is not used: its periodic actions expect a call every step (ours run
once per compiled chunk of hundreds of steps) and its metric writers import
TensorFlow, which gan_jax loads only to prepare data.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gan_jax import kernels as kernels_lib, optim
from gan_jax.run import (build, checkpoint, experiment as experiment_lib, preemption, schema, sweep,
                         workdir as workdir_lib)
from gan_jax.errors import UserError
from gan_jax.run.experiment import Experiment, Outputs, Selection
from gan_jax.loop import TrainLoop
from gan_jax.state import GAN, GANState, set_hparams


def _import_tensorboardx():
  """tensorboardX, without PyTorch: its writer imports torch when it is installed (about
  1 s, and torch's thread pools in a JAX process) only to accept torch tensors, which the
  driver never logs. A torch the process has already imported is left alone."""
  if "torch" in sys.modules:
    import tensorboardX  # pylint: disable=import-outside-toplevel
    return tensorboardX
  sys.modules["torch"] = None  # makes `import torch` raise ImportError, just for this import
  try:
    import tensorboardX  # pylint: disable=import-outside-toplevel
  finally:
    del sys.modules["torch"]
  return tensorboardX


tensorboardX = _import_tensorboardx()


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


def chunk_length(config: ml_collections.ConfigDict) -> int:
  """Iterations per compiled call: every log, eval and checkpoint falls on a boundary."""
  return math.gcd(config.get("steps_per_call", 500), config.log_every, config.eval_every,
                  config.checkpoint_every)


def _is_main() -> bool:
  return jax.process_index() == 0


def _hyperparams(opt_state: Any, opt_cfg: Any) -> dict[str, float]:
  """The current learning rate, momentum etc. of an optimizer made by ``optim.make_optimizer``."""
  hp = {k: float(v) for k, v in (getattr(opt_state, "hyperparams", None) or {}).items()}
  lr = optim.current_learning_rate(opt_cfg, opt_state)
  if lr is not None:
    hp["learning_rate"] = lr
  return hp


class _Recorder:
  """metrics.jsonl, TensorBoard scalars/images and the console line (process 0 only)."""

  def __init__(self, workdir: str, resume_step: int):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.rows = []
    if os.path.exists(self.path):  # keep what precedes the restored checkpoint
      with open(self.path) as f:
        self.rows = [r for r in map(json.loads, filter(str.strip, f)) if r["step"] <= resume_step]
      self._rewrite()
    self.tb = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))

  def _rewrite(self):
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in self.rows)
    os.replace(tmp, self.path)

  def truncate(self, step: int) -> None:
    """Forget the rows after ``step`` (a rollback)."""
    self.rows = [r for r in self.rows if r["step"] <= step]
    self._rewrite()

  def log(self, row: dict) -> None:
    self.rows.append(row)
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    for k, v in row.items():
      if k != "step" and isinstance(v, (int, float)):
        self.tb.add_scalar(k, v, row["step"])
    self.tb.flush()

  def close(self) -> None:
    self.tb.close()


def _fmt_time(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Divergence(UserError):
  """Training produced a non-finite loss, gradient norm or parameter."""


def _first_nonfinite(metrics: dict[str, np.ndarray], first_step: int
                     ) -> tuple[str, float, int] | None:
  """(quantity, value, step) of the earliest non-finite metric of a chunk, or None."""
  found = None
  for key, values in sorted(metrics.items()):
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size and (found is None or first_step + bad[0] + 1 < found[2]):
      found = (key, float(values[bad[0]]), first_step + int(bad[0]) + 1)
  return found


def _nonfinite_leaves(tree: Any) -> list[str]:
  """Paths of the floating-point leaves of ``tree`` that hold a NaN or inf."""
  bad = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    a = np.asarray(leaf)
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
      bad.append(jax.tree_util.keystr(path))
  return bad


def _divergence_error(what: str, step: int, last_good: int | None, rollbacks: int) -> Divergence:
  kept = (f"The newest checkpoint (step {last_good}) is intact and was taken before the "
          f"divergence" if last_good is not None else "No checkpoint had been written")
  tried = (f" after {rollbacks} rollback(s) to the last good state with new random keys"
           if rollbacks else "")
  retry = ("raise --config.max_rollbacks" if rollbacks else
           "set --config.on_divergence=rollback to retry from it with a new random key")
  return Divergence(
      f"Training diverged{tried}: {what} at step {step}. {kept}. Lower the learning rate "
      f"(--config.optimizer.learning_rate) or change the seed and launch again (a lower "
      f"learning rate resumes from that checkpoint), or {retry}.")


def _check_finite(metrics: dict[str, np.ndarray], first_step: int, last_good: int | None,
                  rollbacks: int = 0) -> None:
  """Stop, naming the step and quantity, at the first non-finite loss or gradient norm."""
  found = _first_nonfinite(metrics, first_step)
  if found:
    key, value, step = found
    raise _divergence_error(f"{key} became {value}", step, last_good, rollbacks)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       experiment: type[Experiment]) -> GANState:
  """Train ``config`` (one run, no sweep) into ``workdir``; returns the final state.

  Resumes from the newest intact checkpoint in ``workdir`` when there is one.
  Every check of the config and the workdir runs before data are read or code
  compiled. SIGTERM/SIGINT end the run after the current chunk with a
  checkpoint (see ``gan_jax.run.preemption``); the returned state is then the one
  checkpointed.
  """
  experiment.check(config, len(_devices(config)))  # before the lock creates the workdir
  with workdir_lib.locked(workdir, enabled=_is_main()):
    return train_group(experiment, [config], [workdir])[0]


def train_sweep(config: ml_collections.ConfigDict, workdir: str,
                experiment: type[Experiment]) -> list[dict]:
  """Every replica of ``config.sweep``, each a whole run in ``<workdir>/<replica>``.

  Replicas whose configs differ only in vmappable fields (seed, learning rates,
  label smoothing, losses, EMA decay) train together as one vmapped program;
  the others one group after another. Each replica's sub-workdir holds what
  training it alone would write, so launching the same workdir again resumes
  the unfinished replicas and passes over the finished. After each group the
  experiment summarises the finished replicas (``sweep.csv``: their values and
  final metrics rows). Returns those rows.
  """
  replicas = validate_experiment(config, experiment)
  with workdir_lib.locked(workdir, enabled=_is_main()):
    return _train_sweep(experiment, replicas, workdir)


def validate_experiment(config: ml_collections.ConfigDict, experiment: type[Experiment]
                        ) -> list[sweep.Replica]:
  """Check every replica's config (one without a sweep); returns the replicas."""
  replicas = sweep.expand(config)
  for replica in replicas:  # every replica's config is checked before any of them trains
    experiment.check(replica.config, len(_devices(replica.config)))
  return replicas


def _train_sweep(experiment: type[Experiment], replicas: list[sweep.Replica], workdir: str
                 ) -> list[dict]:
  grouped = sweep.groups(replicas)
  if _is_main():
    os.makedirs(workdir, exist_ok=True)
    print(f"Sweep of {len(replicas)} runs in {len(grouped)} group(s) of one program each: "
          f"{'; '.join(', '.join(r.name for r in g) for g in grouped)}", flush=True)
  done: list[sweep.Replica] = []
  for i, group in enumerate(grouped):
    subs = [os.path.join(workdir, r.name) for r in group]
    if _is_main():
      print(f"[group {i + 1}/{len(grouped)}] {', '.join(r.name for r in group)} -> "
            f"{workdir}/<replica>", flush=True)
    train_group(experiment, [r.config for r in group], subs, [r.name for r in group])
    if preemption.STOP.signal_name is not None:
      break  # the group saved checkpoints and said so; the next launch goes on from them
    done += group
    if _is_main():
      experiment.summarize(done, workdir)
  if not _is_main():
    return []
  return [experiment_lib.final_row(r, os.path.join(workdir, r.name)) for r in done]


def _devices(config: ml_collections.ConfigDict) -> list[Any]:
  if config.get("parallel", "pmap") == "none" and jax.process_count() > 1:
    raise UserError(f"config.parallel='none' trains on one device, but this is a run of "
                    f"{jax.process_count()} processes; use 'pmap' or 'shard_map' to span them.")
  # pmap/shard_map span the devices of every process; each process feeds its local ones.
  return jax.devices() if config.get("parallel", "pmap") != "none" else jax.local_devices()[:1]


class _Misaligned(Exception):
  """The replicas of a group were checkpointed at different steps."""


def train_group(experiment: type[Experiment], configs: list[ml_collections.ConfigDict],
                workdirs: list[str], names: list[str] | None = None) -> list[GANState]:
  """Train configs that differ only in ``sweep.VMAPPABLE`` fields, one workdir each.

  The replicas train as one compiled program, the chunk ``jax.vmap``-ed over
  their stacked states inside the data parallelism (one config is a group of
  one); each still writes a complete run into its own workdir, exactly what
  training it alone writes. If their newest checkpoints are at different steps
  (one was damaged, say), they train one after another instead. Returns the
  final states (host arrays).
  """
  names = names or [""] * len(configs)
  devices = _devices(configs[0])
  exp_cls = experiment
  for config in configs:
    experiment.check(config, len(devices))
  for workdir in workdirs:
    prepare_workdir(workdir)
  ckpts = [checkpoint.Checkpointer(w, keep=c.get("keep_checkpoints", 2),
                                   keep_every=c.get("keep_every", 0))
           for c, w in zip(configs, workdirs, strict=True)]
  closers: list[Any] = []  # the TensorBoard writers, closed however training ends
  try:
    for ckpt, config in zip(ckpts, configs, strict=True):
      schema.check_resumable(ckpt, config, fields=exp_cls.schema(), resumable=exp_cls.resumable)
    kernels = kernels_lib.for_devices(configs[0].get("kernels", "auto"), devices)
    run = _Run(exp_cls(configs, kernels), workdirs, names, tuple(devices), ckpts, closers)
    return _loop(run)
  except _Misaligned:
    pass
  finally:
    for close in closers + [ckpt.close for ckpt in ckpts]:
      close()
  _warn("The replicas' newest checkpoints are at different steps; they train one after "
        "another.")
  finals = []
  for config, workdir, name in zip(configs, workdirs, names, strict=True):
    finals += train_group(experiment, [config], [workdir], [name])
    if preemption.STOP.signal_name is not None:
      break
  return finals


@dataclasses.dataclass
class Periodic:
  """A periodic action in CLU's style: ``fn(run)`` at every multiple of any of ``every``
  and at the last step. Chunks end on every multiple (``chunk_length``), so none is missed."""

  every: tuple[int, ...]
  fn: Callable[[], None]

  def __call__(self, step: int, last: bool) -> None:
    if last or any(step % n == 0 for n in self.every):
      self.fn()


def _loop(run: "_Run") -> list[GANState]:
  """The training loop of every experiment: chunks, then the periodic actions."""
  c = run.config
  # With model selection every evaluation is checkpointed too: a new best is that checkpoint.
  saves = (c.checkpoint_every,) + ((c.eval_every,) if run.selection else ())
  actions = [Periodic((c.log_every,), run.log), Periodic((c.eval_every,), run.evaluate),
             Periodic((1,), run.record), Periodic(saves, run.checkpoint)]
  run.announce()
  with preemption.STOP.installed() as stop:
    while run.step < run.total:
      if stop.requested():
        return run.stop(stop.signal_name or "a stop signal to another process")
      if run.train_chunk():  # False: it diverged and rolled back
        for action in actions:
          action(run.step, run.step >= run.total)
  return run.finish()


class _Run:
  """A group's replicas during training: spec, states on device, memories, outputs."""

  def __init__(self, exp: experiment_lib.Experiment, workdirs: list[str], names: list[str],
               devices: tuple[Any, ...], ckpts: list[checkpoint.Checkpointer],
               closers: list[Any]):
    self.exp, self.configs, self.config = exp, exp.configs, exp.config
    self.num, self.workdirs, self.names, self.ckpts = len(exp.configs), workdirs, names, ckpts
    self.total = self.config.num_train_steps
    self.data = exp.load_data()
    self.gan = exp.make_gan(self.data)
    self.roots = [jax.random.key(c.seed) for c in self.configs]
    self.likes = [exp.initial_state(i, self.gan, self.data, r)
                  for i, r in enumerate(self.roots)]
    self._fresh: list[tuple[GANState, dict] | None] = [None] * self.num

    self.rollbacks = 0
    states, memories = self._restore(announce=True)
    starts = {int(s.step) for s in states}
    if len(starts) > 1:
      raise _Misaligned()
    self.start = self.step = starts.pop()

    self.config_json = [c.to_json_best_effort(sort_keys=True) for c in self.configs]
    recorders = [_Recorder(w, self.start) for w in workdirs] if _is_main() else []
    closers.extend(r.close for r in recorders)
    self.recorders = recorders
    self.outs = [Outputs(w, _label(n), recorders[i].tb if recorders else None)
                 for i, (w, n) in enumerate(zip(workdirs, names, strict=True))]
    if _is_main():
      for c, w in zip(self.configs, workdirs, strict=True):
        with open(os.path.join(w, "config.json"), "w") as f:
          f.write(c.to_json_best_effort(indent=2, sort_keys=True))

    self.devices, self.chunk = devices, chunk_length(self.config)
    self._loops: dict[int, TrainLoop] = {}
    self.loop = self._loop_of(self.chunk)
    self.memories = memories
    self.dstate, self.ddata = self._put(states), self.loop.put_data(self.data.array)
    self.pending: list[list[dict]] = []
    self.rows: list[dict] = [{} for _ in range(self.num)]
    self._hosts: tuple[int, list[GANState]] | None = None
    self.t_start = self.t_last = time.time()
    self.step_last = self.start
    self.evaluated = False
    self.selection = exp.selection()
    if self.selection is not None:  # an experiment may return a plain (key, higher) pair
      self.selection = Selection(*self.selection)
    self.best = [checkpoint.Checkpointer(w, keep=1, subdir=checkpoint.BEST)
                 for w in workdirs] if self.selection else []
    closers.extend(b.close for b in self.best)
    self.new_best: list[int] = []  # replicas whose evaluation at this step is their best

  # --- State: restore, place, copy back --------------------------------------

  def _fresh_state(self, i: int) -> tuple[GANState, dict]:
    """Replica i at step 0: its initial state after the experiment's warm-up (made once)."""
    if self._fresh[i] is None:
      self._fresh[i] = self.exp.start(i, self.gan, self.likes[i], self.roots[i])
    return self._fresh[i]

  def _restore(self, announce: bool = False) -> tuple[list[GANState], list[dict]]:
    """The newest intact checkpoint of each replica (else its fresh state), with memory."""
    states, memories = [], []
    for i, ckpt in enumerate(self.ckpts):
      found = ckpt.restore_latest_valid(self.likes[i], report=_warn)
      if found is None:
        state, memory = self._fresh_state(i)
      else:
        state, meta = found
        state = _this_runs_rates(self.gan, state, self.configs[i])
        memory = meta.get("memory", {})
        self.rollbacks = max(self.rollbacks, int(meta.get("rollbacks", 0)))
        if announce:
          _warn(f"Resuming {_label(self.names[i])}from the checkpoint at step "
                f"{int(state.step)} in {ckpt.directory}")
      states.append(state)
      memories.append(json.loads(json.dumps(memory)))  # a copy the run may change
    return states, memories

  def _loop_of(self, length: int) -> TrainLoop:
    if length not in self._loops:  # a final partial chunk compiles once more
      self._loops[length] = TrainLoop(
          self.gan, self.data.source, global_batch=self.config.batch_size,
          steps_per_call=length, parallel=self.config.get("parallel", "pmap"),
          devices=self.devices, vmapped=True, kernels=self.exp.kernels)
    return self._loops[length]

  def _put(self, states: list[GANState]) -> Any:
    return self.loop.put_state(sweep.stack(states))

  def _key(self) -> jax.Array:
    """The replicas' training keys; each rollback continues with fresh ones."""
    keys = [jax.random.fold_in(r, 1) for r in self.roots]
    if self.rollbacks:
      keys = [jax.random.fold_in(k, self.rollbacks) for k in keys]
    return jnp.stack(keys)

  def hosts(self) -> list[GANState]:
    """Host copies of the replicas' states at this step (made once per step)."""
    if self._hosts is None or self._hosts[0] != self.step:
      host = checkpoint.host_copy(self.loop.get_state(self.dstate))
      self._hosts = (self.step, [sweep.unstack(host, i) for i in range(self.num)])
    return self._hosts[1]

  # --- Training --------------------------------------------------------------

  def announce(self) -> None:
    if not _is_main():
      return
    bpe = self.data.batches_per_epoch
    epochs = (f" ({self.total * self.gan.real_batches_per_step / bpe:.1f} epochs)"
              if bpe else "")
    procs = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
    many = f", {self.num} replicas vmapped in one program" if self.num > 1 else ""
    print(f"Training {self.total} iterations{epochs} from step {self.start}: global batch "
          f"{self.config.batch_size} on {len(self.devices)} {self.devices[0].platform} "
          f"device(s){procs}, {self.chunk} iterations per compiled call{many}.", flush=True)

  def train_chunk(self) -> bool:
    """One compiled chunk; False when it diverged and the run rolled back."""
    self.loop = self._loop_of(min(self.chunk, self.total - self.step))
    self.dstate, metrics = self.loop(self.dstate, self.ddata, self._key())
    metrics = jax.device_get(metrics)  # [replicas, chunk] each
    metrics = [{k: v[i] for k, v in metrics.items()} for i in range(self.num)]
    first, self.step = self.step, self.step + self.loop.steps_per_call
    bad = [(i, b) for i, m in enumerate(metrics) if (b := _first_nonfinite(m, first))]
    if bad:
      i, (key, value, bad_step) = min(bad, key=lambda ib: ib[1][2])
      self._diverged(f"{_label(self.names[i])}{key} became {value}", bad_step, i)
      return False
    for i, m in enumerate(metrics):
      self.exp.observe(i, self.memories[i], first, m)
    self.pending.append(metrics)
    self.rows = [{} for _ in range(self.num)]
    self.evaluated = False
    return True

  def _diverged(self, what: str, bad_step: int, i: int) -> None:
    limit = self.config.get("max_rollbacks", 3)
    if self.config.get("on_divergence", "stop") != "rollback" or self.rollbacks >= limit:
      raise _divergence_error(what, bad_step, self.ckpts[i].latest_step(), self.rollbacks)
    self.rollbacks += 1
    states, self.memories = self._restore()
    if len({int(s.step) for s in states}) > 1:
      raise _divergence_error(what, bad_step, self.ckpts[i].latest_step(), self.rollbacks)
    self.step = self.step_last = int(states[0].step)
    self.loop = self._loop_of(self.chunk)
    self.dstate, self.pending, self.t_last = self._put(states), [], time.time()
    self._hosts = None
    for recorder in self.recorders:
      recorder.truncate(self.step)
    _warn(f"warning: training diverged: {what} at step {bad_step}. Rolled back to step "
          f"{self.step} ({'the newest checkpoint' if self.step else 'the initial state'}) and "
          f"continuing with a new random key (rollback {self.rollbacks} of {limit}).")

  # --- The periodic actions --------------------------------------------------

  def log(self) -> None:
    """Means of the metrics since the last log, rates and learning rates; the console line."""
    now = time.time()
    rate = (self.step - self.step_last) / max(now - self.t_last, 1e-9)
    self.t_last, self.step_last, pending, self.pending = now, self.step, self.pending, []
    if not _is_main():
      return
    # One copy of the optimizer states only: their scalars, not the parameters.
    opts = jax.device_get(self.loop.get_state((self.dstate.d.opt_state,
                                               self.dstate.g.opt_state)))
    bpe = self.data.batches_per_epoch
    for i, config in enumerate(self.configs):
      means = {k: float(np.mean(np.concatenate([m[i][k] for m in pending])))
               for k in pending[0][i]}
      row = self.rows[i]
      row["step"] = self.step
      if bpe:
        row["epoch"] = self.step * self.gan.real_batches_per_step / bpe
      row.update({"wall_time": now - self.t_start, "iterations_per_second": rate, **means})
      d_opt, g_opt = (jax.tree.map(lambda x, i=i: x[i], o) for o in opts)
      row.update({f"d_{k}": v for k, v in _hyperparams(d_opt, config.optimizer).items()})
      g_cfg = config.get("g_optimizer") or config.optimizer
      row.update({f"g_{k}": v for k, v in _hyperparams(g_opt, g_cfg).items()})
      if self.rollbacks:
        row["rollbacks"] = self.rollbacks
      epoch = f"  epoch {row['epoch']:.1f}" if bpe else ""
      print(f"{_label(self.names[i])}step {self.step}/{self.total}{epoch}  {rate:.1f} it/s  "
            f"ETA {_fmt_time((self.total - self.step) / max(rate, 1e-9))}  |  D loss "
            f"{means['d_loss']:.4f}  G loss {means['g_loss']:.4f}  D(x) {means['d_real']:.3f}"
            f"  D(G(z)) {means['d_fake']:.3f}", flush=True)

  def evaluate(self) -> None:
    """The experiment's evaluation of each replica (process 0), kept out of the it/s."""
    if not _is_main():
      return
    t_eval = time.time()
    for i, host in enumerate(self.hosts()):
      self.rows[i].setdefault("step", self.step)
      self.rows[i].update(self.exp.evaluate(i, self.gan, host, self.memories[i], self.outs[i],
                                            self.roots[i]))
      if self.selection:
        self._select(i)
    self.evaluated = True
    self.t_last += time.time() - t_eval

  def record(self) -> None:
    """This chunk's rows into metrics.jsonl and TensorBoard; curves after an evaluation."""
    if not _is_main():
      return
    for i, row in enumerate(self.rows):
      if row:
        self.recorders[i].log(row)
        if self.evaluated:
          self.exp.plot(i, self.recorders[i].rows, self.memories[i], self.outs[i])

  def checkpoint(self) -> None:
    hosts = self.hosts()
    for i, host in enumerate(hosts):
      bad = _nonfinite_leaves(host)
      if bad:  # never checkpoint a diverged state
        raise _divergence_error(
            f"{_label(self.names[i])}the parameters {', '.join(bad[:4])} became non-finite",
            int(host.step), self.ckpts[i].latest_step(), self.rollbacks)
    for i, host in enumerate(hosts):
      self.ckpts[i].save(host, {"config": self.config_json[i], "rollbacks": self.rollbacks,
                                "memory": self.memories[i]})
    if self.selection:  # a collective decision: process 0 evaluated and tells the others
      new_best = _from_process_0(self.new_best, self.num)
      for i in new_best:
        self.best[i].adopt(self.ckpts[i], self.step)
      self.new_best = []

  def _select(self, i: int) -> None:
    """Replica i's best model so far by the experiment's selection metric (raw G or EMA)."""
    key = self.selection.key
    row, memory = self.rows[i], self.memories[i]
    best, why = self.selection.update(memory.get(SELECTED), row, self.step)
    if why:
      print(f"{_label(self.names[i])}the EMA of G is not a candidate at step {self.step}: "
            f"{why} (config.evaluation.ema_guard)", flush=True)
    if best is None:
      return
    memory[SELECTED] = best
    value, generator = best["value"], best["generator"]
    row["selected_step"], row[f"selected_{key}"] = self.step, value
    row["selected_generator"] = generator
    self.new_best.append(i)
    print(f"{_label(self.names[i])}best so far on {key}: {value:.4g} "
          f"({'the EMA of G' if generator == 'ema' else 'G'}, step {self.step}); kept in "
          f"{self.best[i].directory}", flush=True)

  # --- The end ---------------------------------------------------------------

  def stop(self, by: str) -> list[GANState]:
    self.checkpoint()
    if _is_main():
      where = self.ckpts[0].directory if self.num == 1 else "each replica's checkpoints/"
      print(f"Stopped by {by} at step {self.step} of {self.total}; the checkpoint at step "
            f"{self.step} is in {where}. Launch the same command again to resume.", flush=True)
    return self.hosts()

  def finish(self) -> list[GANState]:
    hosts = self.hosts()
    if _is_main():
      for i, host in enumerate(hosts):
        self.exp.finish(i, self.gan, host, self.memories[i], self.recorders[i].rows,
                        self.outs[i], self.roots[i])
      where = (", ".join(self.workdirs) if self.num < 4 else
               os.path.dirname(self.workdirs[0]))
      print(f"Done: {self.step} iterations in {_fmt_time(time.time() - self.t_start)}; "
            f"outputs in {where}", flush=True)
    return hosts


SELECTED = "selected"  # the memory key of the best model so far


def _from_process_0(replicas: list[int], num: int) -> list[int]:
  """Process 0's list of replica indices, on every process."""
  if jax.process_count() == 1:
    return replicas
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  mask = np.zeros(num, np.int32)
  mask[replicas] = 1
  return [int(i) for i in np.flatnonzero(multihost_utils.broadcast_one_to_all(mask))]


def _warn(message: str) -> None:
  if _is_main():
    print(message, flush=True)


def _label(name: str) -> str:
  return f"[{name}] " if name else ""


def _this_runs_rates(gan: GAN, state: GANState, config: ml_collections.ConfigDict) -> GANState:
  """A restored state with this launch's learning rates (they may change between launches)."""
  hp = build.replica_hparams(config)
  return set_hparams(gan, state, {k: hp[k] for k in ("d_learning_rate", "g_learning_rate")})
