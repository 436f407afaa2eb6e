"""The one training driver: every experiment, one run or a sweep, into its workdir.

Data flow: config -> experiment (data, GAN spec, initial states) -> the workdir's newest
intact checkpoint, if any -> scanned chunks of a group's replicas as one vmapped program
-> the periodic actions (log, evaluate, record, checkpoint), each a short function of the
``Group`` -> final results. Process 0 writes logs, pictures and metrics; every process
takes part in checkpoints.

CLU's periodic actions are not used: they expect a call every step (these run once per
compiled chunk of hundreds of steps), and its metric writers import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import optim
from gan_jax.run import checkpoint, divergence, preemption, schema, sweep, workdir as workdir_lib
from gan_jax.run.experiment import Experiment, final_row
from gan_jax.run.group import (
  SELECTED,
  Group,
  Misaligned,
  Run,
  chunk_length,
  devices_for,
  evaluates_at,
  is_main,
  open_group,
  prepare_workdir,
  restore,
  say,
)
from gan_jax.run.recorder import duration, progress_line
from gan_jax.state import GANState

Config = Any  # an ml_collections.ConfigDict, whose values the schema has checked


def train_and_evaluate(config: Config, workdir: str, experiment: type[Experiment]) -> GANState:
  """Train ``config`` (one run, no sweep) into ``workdir``; returns the final state.

  Resumes from the newest intact checkpoint in ``workdir``. The config is checked
  before data are read or code compiled. SIGTERM/SIGINT end the run after the current
  chunk with a checkpoint; the returned state is then the one checkpointed.
  """
  experiment.check(config, len(devices_for(config)))  # before the lock creates the workdir
  with workdir_lib.locked(workdir, enabled=is_main()):
    return train_group(experiment, [config], [workdir])[0]


def train_sweep(config: Config, workdir: str, experiment: type[Experiment]) -> list[dict]:
  """Every replica of ``config.sweep``, each a whole run in ``<workdir>/<replica>``.

  Replicas that differ only in vmappable fields train together as one program, the
  others group after group. Launching the same workdir again resumes the unfinished
  replicas. After each group the experiment summarises the finished replicas
  (``sweep.csv``); returns those rows.
  """
  replicas = validate_experiment(config, experiment)
  with workdir_lib.locked(workdir, enabled=is_main()):
    grouped = sweep.groups(replicas)
    say(f"Sweep of {len(replicas)} runs in {len(grouped)} group(s) of one program each: "
         f"{'; '.join(', '.join(r.name for r in g) for g in grouped)}")
    done: list[sweep.Replica] = []
    for i, group in enumerate(grouped):
      say(f"[group {i + 1}/{len(grouped)}] {', '.join(r.name for r in group)} -> "
           f"{workdir}/<replica>")
      train_group(experiment, [r.config for r in group],
                  [os.path.join(workdir, r.name) for r in group], [r.name for r in group])
      if preemption.STOP.signal_name is not None:
        break  # the group saved checkpoints and said so; the next launch goes on from them
      done += group
      if is_main():
        experiment.summarize(done, workdir)
  if not is_main():
    return []
  return [final_row(r, os.path.join(workdir, r.name)) for r in done]


def validate_experiment(config: Config, experiment: type[Experiment]) -> list[sweep.Replica]:
  """Check every replica's config (one without a sweep); returns the replicas."""
  replicas = sweep.expand(config)
  for replica in replicas:  # every replica's config is checked before any of them trains
    experiment.check(replica.config, len(devices_for(replica.config)))
  return replicas


def train_group(experiment: type[Experiment], configs: list[Config], workdirs: list[str],
                names: list[str] | None = None) -> list[GANState]:
  """Train configs that differ only in ``sweep.VMAPPABLE`` fields, one workdir each.

  The replicas train as one compiled program, the chunk ``jax.vmap``-ed over their
  stacked states inside the data parallelism (one config is a group of one); each
  writes into its own workdir exactly what training it alone writes. If their newest
  checkpoints are at different steps (one was damaged, say), they train one after
  another instead. The configs must have passed ``experiment.check``. Returns the final
  states (host arrays).
  """
  names = names or [""] * len(configs)
  for workdir in workdirs:
    prepare_workdir(workdir)
  runs = [Run(n, c, w, checkpoint.Checkpointer(w, keep=c.get("keep_checkpoints", 2),
                                                keep_every=c.get("keep_every", 0)))
          for n, c, w in zip(names, configs, workdirs, strict=True)]
  try:
    for run in runs:
      schema.check_resumable(run.ckpt, run.config, fields=experiment.schema(),
                             resumable=experiment.resumable)
    return _train(open_group(experiment(configs), runs, tuple(devices_for(configs[0]))))
  except Misaligned:
    pass
  finally:
    for run in runs:
      run.close()
  say("The replicas' newest checkpoints are at different steps; they train one after "
       "another.")
  finals = []
  for config, workdir, name in zip(configs, workdirs, names, strict=True):
    finals += train_group(experiment, [config], [workdir], [name])
    if preemption.STOP.signal_name is not None:
      break
  return finals



# --- The loop and its periodic actions ---------------------------------------------------


@dataclasses.dataclass
class Periodic:
  """``fn(group)`` at the steps where ``when(step)`` holds and at the last step. Chunks end
  on every such step (``chunk_length``), so none is missed."""

  when: Callable[[int], bool]
  fn: Callable[[Group], None]

  def __call__(self, g: Group) -> None:
    if g.step >= g.total or self.when(g.step):
      self.fn(g)


def _train(g: Group) -> list[GANState]:
  """The training loop of every experiment: chunks, then the periodic actions."""
  c = g.config
  evaluating = functools.partial(evaluates_at, c)
  # With model selection every evaluation is checkpointed too: a new best is that checkpoint.
  saves = lambda s: s % c.checkpoint_every == 0 or (g.selection is not None  # noqa: E731
                                                     and evaluating(s))
  actions = [Periodic(lambda s: s % c.log_every == 0, _log), Periodic(evaluating, _evaluate),
             Periodic(lambda s: True, _record), Periodic(saves, _checkpoint)]
  _announce(g)
  with preemption.STOP.installed() as stop:
    while g.step < g.total:
      if stop.requested():
        return _stop(g, stop.signal_name or "a stop signal to another process")
      if _train_chunk(g):  # False: it diverged and rolled back
        for action in actions:
          action(g)
  return _finish(g)


def _announce(g: Group) -> None:
  bpe, n = g.data.batches_per_epoch, len(g.runs)
  epochs = f" ({g.total * g.gan.real_batches_per_step / bpe:.1f} epochs)" if bpe else ""
  procs = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
  many = f", {n} replicas vmapped in one program" if n > 1 else ""
  dtype = getattr(g.gan.generator, "dtype", None)
  compute = f", {jnp.dtype(dtype).name} products" if dtype is not None else ""
  say(f"Training {g.total} iterations{epochs} from step {g.step}: global batch "
       f"{g.config.batch_size} on {len(g.devices)} {g.devices[0].platform} device(s){procs}, "
       f"{chunk_length(g.config)} iterations per compiled call{many}, {g.kernels} kernels"
       f"{compute}.")


def _train_chunk(g: Group) -> bool:
  """One compiled chunk; False when it diverged and the group rolled back."""
  loop = g.loop(min(chunk_length(g.config), g.total - g.step))
  keys = [jax.random.fold_in(run.root, 1) for run in g.runs]
  if g.rollbacks:  # each rollback continues with fresh keys
    keys = [jax.random.fold_in(k, g.rollbacks) for k in keys]
  g.dstate, stacked = loop(g.dstate, g.ddata, jnp.stack(keys))
  stacked = jax.device_get(stacked)  # [replicas, chunk] each
  metrics = [{k: v[i] for k, v in stacked.items()} for i in range(len(g.runs))]
  first, g.step = g.step, g.step + loop.steps_per_call
  bad = [(i, b) for i, m in enumerate(metrics) if (b := divergence.first_nonfinite(m, first))]
  if bad:
    i, (key, value, bad_step) = min(bad, key=lambda ib: ib[1][2])
    _diverged(g, f"{g.runs[i].label}{key} became {value}", bad_step, i)
    return False
  for i, m in enumerate(metrics):
    g.exp.observe(g.context(i), m)
  g.pending.append(metrics)
  for run in g.runs:
    run.row = {}
  g.evaluated = False
  return True


def _diverged(g: Group, what: str, bad_step: int, i: int) -> None:
  """Stop with the divergence paragraph, or roll back to the newest good checkpoint."""
  limit, last_good = g.config.get("max_rollbacks", 3), g.runs[i].ckpt.latest_step()
  if g.config.get("on_divergence", "stop") != "rollback" or g.rollbacks >= limit:
    raise divergence.error(what, bad_step, last_good, g.rollbacks)
  g.rollbacks += 1
  states = restore(g)
  if len({int(s.step) for s in states}) > 1:
    raise divergence.error(what, bad_step, last_good, g.rollbacks)
  g.step = int(states[0].step)
  g.dstate, g.pending = g.put(states), []
  g.clock.update(time=time.time(), step=g.step)
  for run in g.runs:
    if run.recorder:
      run.recorder.truncate(g.step)
  say(f"warning: training diverged: {what} at step {bad_step}. Rolled back to step {g.step} "
       f"({'the newest checkpoint' if g.step else 'the initial state'}) and continuing with a "
       f"new random key (rollback {g.rollbacks} of {limit}).")


def _log(g: Group) -> None:
  """Means of the metrics since the last log, rates and learning rates; the console line."""
  now = time.time()
  rate = (g.step - g.clock["step"]) / max(now - g.clock["time"], 1e-9)
  g.clock.update(time=now, step=g.step)
  pending, g.pending = g.pending, []
  if not is_main():
    return
  # One copy of the optimizer states only: their scalars, not the parameters.
  opts = jax.device_get(g.loop().get_state((g.dstate.d.opt_state, g.dstate.g.opt_state)))
  bpe = g.data.batches_per_epoch
  for i, run in enumerate(g.runs):
    run.row["step"] = g.step
    if bpe:
      run.row["epoch"] = g.step * g.gan.real_batches_per_step / bpe
    run.row.update({"wall_time": now - g.clock["start"], "iterations_per_second": rate})
    run.row.update({k: float(np.mean(np.concatenate([m[i][k] for m in pending])))
                    for k in pending[0][i]})
    run.row.update(_optimizer_values(run.config, jax.tree.map(lambda x, i=i: x[i], opts)))
    if g.rollbacks:
      run.row["rollbacks"] = g.rollbacks
    print(progress_line(run.label, run.row, g.total, rate), flush=True)


def _optimizer_values(config: Config, opts: tuple[Any, Any]) -> dict[str, float]:
  """Each player's current learning rate, momentum, ... (``d_learning_rate``, ...)."""
  row = {}
  for prefix, opt_state, cfg in (("d_", opts[0], config.optimizer),
                                 ("g_", opts[1], config.get("g_optimizer") or config.optimizer)):
    hp = {k: float(v) for k, v in (getattr(opt_state, "hyperparams", None) or {}).items()}
    lr = optim.current_learning_rate(cfg, opt_state)
    if lr is not None:
      hp["learning_rate"] = lr
    row.update({prefix + k: v for k, v in hp.items()})
  return row


def _evaluate(g: Group) -> None:
  """The experiment's evaluation of each replica (process 0), kept out of the it/s."""
  if not is_main():
    return
  t0 = time.time()
  for i, (run, host) in enumerate(zip(g.runs, g.hosts(), strict=True)):
    run.row.setdefault("step", g.step)
    run.row.update(g.exp.evaluate(g.context(i, state=host)))
    if g.selection:
      _select(g, i)
  g.evaluated = True
  g.clock["time"] += time.time() - t0


def _select(g: Group, i: int) -> None:
  """Replica i's best model so far by the experiment's selection metric (raw G or EMA)."""
  assert g.selection is not None
  run, key = g.runs[i], g.selection.key
  best, why = g.selection.update(run.memory.get(SELECTED), run.row, g.step)
  if why:
    print(f"{run.label}the EMA of G is not a candidate at step {g.step}: {why} "
          f"(config.evaluation.ema_guard)", flush=True)
  if best is None:
    return
  run.memory[SELECTED] = best
  run.row.update({"selected_step": g.step, f"selected_{key}": best["value"],
                  "selected_generator": best["generator"]})
  g.new_best.append(i)
  print(f"{run.label}best so far on {key}: {best['value']:.4g} "
        f"({'the EMA of G' if best['generator'] == 'ema' else 'G'}, step {g.step}); kept in "
        f"{run.best.directory if run.best else '?'}", flush=True)


def _record(g: Group) -> None:
  """This chunk's rows into metrics.jsonl and TensorBoard; the curves' pictures after an
  evaluation, at most every ``plot_every_seconds`` (drawing them costs about a second) and
  after the last step."""
  if not is_main():
    return
  now = time.time()
  plot = g.evaluated and (g.step >= g.total or now - g.clock.get("plotted", -math.inf)
                          >= g.config.get("plot_every_seconds", 60.0))
  for i, run in enumerate(g.runs):
    if run.row and run.recorder:
      run.recorder.log(run.row)
      if plot:
        g.exp.plot(g.context(i))
  if plot:
    g.clock["plotted"] = now


def _checkpoint(g: Group) -> None:
  """Every replica's state, verified finite; then the adoption of new bests."""
  hosts = g.hosts()
  for run, host in zip(g.runs, hosts, strict=True):
    bad = divergence.nonfinite_leaves(host)
    if bad:  # never checkpoint a diverged state
      raise divergence.error(
          f"{run.label}the parameters {', '.join(bad[:4])} became non-finite",
          int(host.step), run.ckpt.latest_step(), g.rollbacks)
  for run, host in zip(g.runs, hosts, strict=True):
    run.ckpt.save(host, {"config": run.config.to_json_best_effort(sort_keys=True),
                         "rollbacks": g.rollbacks, "memory": run.memory})
  if g.selection:  # a collective decision: process 0 evaluated and tells the others
    for i in _from_process_0(g.new_best, len(g.runs)):
      best = g.runs[i].best
      assert best is not None
      best.adopt(g.runs[i].ckpt, g.step)
    g.new_best = []


def _stop(g: Group, by: str) -> list[GANState]:
  _checkpoint(g)
  where = g.runs[0].ckpt.directory if len(g.runs) == 1 else "each replica's checkpoints/"
  say(f"Stopped by {by} at step {g.step} of {g.total}; the checkpoint at step {g.step} is "
       f"in {where}. Launch the same command again to resume.")
  return g.hosts()


def _finish(g: Group) -> list[GANState]:
  hosts = g.hosts()
  if is_main():
    for i, host in enumerate(hosts):
      g.exp.finish(g.context(i, state=host))
    where = (", ".join(run.workdir for run in g.runs) if len(g.runs) < 4 else
             os.path.dirname(g.runs[0].workdir))
    say(f"Done: {g.step} iterations in {duration(time.time() - g.clock['start'])}; "
         f"outputs in {where}")
  return hosts


def _from_process_0(replicas: list[int], num: int) -> list[int]:
  """Process 0's list of replica indices, on every process."""
  if jax.process_count() == 1:
    return replicas
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  mask = np.zeros(num, np.int32)
  mask[replicas] = 1
  return [int(i) for i in np.flatnonzero(multihost_utils.broadcast_one_to_all(mask))]
