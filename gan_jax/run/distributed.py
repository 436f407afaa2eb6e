"""Multi-process runs through JAX's own distributed runtime.

One JAX process runs per host (or per GPU); every process runs the same
program. ``initialize`` calls ``jax.distributed.initialize``, which detects
the cluster itself (Cloud TPU pods, SLURM, Open MPI, Kubernetes jobs); the
command-line flags only override what it detects (or stand in for it on a
cluster it does not know). Outside any cluster, with no flags, JAX finds
nothing to join and the run is a single process. It must run before JAX
touches a device. After it, ``jax.devices()`` lists the devices of every
process, the training loop's pmap or shard_map spans them all, each process
feeds its own local devices, and only process 0 writes logs, samples and
metrics. On CPUs the collectives go over gloo (JAX's default there).
"""

from __future__ import annotations

import jax

from gan_jax.errors import UserError

# What jax.distributed.initialize says when it detected no cluster and was given no address.
_NOTHING_DETECTED = "coordinator_address should be defined"


def initialize(*, coordinator_address: str = "", num_processes: int = 0, process_id: int = -1,
               enabled: bool = True, timeout_s: int = 300) -> bool:
  """Join a multi-process run; returns True when one was joined, False for a single process.

  Args:
    coordinator_address: ``host:port`` of process 0's coordinator service ("" : detected).
    num_processes: how many processes take part (0: detected).
    process_id: this process's index in ``[0, num_processes)`` (-1: detected).
    enabled: False skips detection altogether (a single process, whatever the environment).
    timeout_s: how long to wait for every process to connect.
  """
  if not enabled:
    return False
  overrides = {}
  if coordinator_address:
    if ":" not in coordinator_address:
      raise UserError(f"--coordinator_address={coordinator_address!r} has no port; write it "
                      f"as HOST:PORT, e.g. 10.0.0.1:1234 (process 0's host).")
    overrides["coordinator_address"] = coordinator_address
  if num_processes > 0:
    overrides["num_processes"] = num_processes
  if process_id >= 0:
    if num_processes > 0 and process_id >= num_processes:
      raise UserError(f"--process_id={process_id} is not below --num_processes="
                      f"{num_processes}; give each process its own id in 0 .. "
                      f"{num_processes - 1}.")
    overrides["process_id"] = process_id
  try:
    jax.distributed.initialize(**overrides, initialization_timeout=timeout_s)
  except (RuntimeError, ValueError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if not overrides and _NOTHING_DETECTED in first:
      return False  # no cluster here: a single process
    raise UserError(
        f"Joining the multi-process run failed: {first}. Outside a cluster that JAX detects "
        f"(TPU pod, SLURM, Open MPI, Kubernetes), give every process the same "
        f"--coordinator_address=HOST:PORT and --num_processes=N and its own --process_id; "
        f"check that process 0 is running and its port is reachable. Pass --distributed=off "
        f"to run a single process whatever the environment says."
    ) from e
  return jax.process_count() > 1


def describe() -> str:
  """``process i of n, L local / G global devices (platform)``."""
  return (f"process {jax.process_index()} of {jax.process_count()}, "
          f"{jax.local_device_count()} local / {jax.device_count()} global "
          f"{jax.devices()[0].platform} devices")
