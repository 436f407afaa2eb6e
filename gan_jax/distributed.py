"""Multi-process runs through JAX's own distributed runtime.

One JAX process runs per host (or per GPU); every process runs the same
program. ``initialize`` joins them: with an explicit coordinator address,
process count and process id, or with ``auto=True``, which leaves detection to
JAX (Cloud TPU pods, SLURM, Open MPI, Kubernetes jobs). It must run before
JAX touches a device. After it, ``jax.devices()`` lists the devices of every
process, the training loop's pmap or shard_map spans them all, each process
feeds its own local devices, and only process 0 writes logs, samples and
metrics. On CPUs the collectives go over gloo (JAX's default there).
"""

from __future__ import annotations

import jax

from gan_jax.errors import UserError


def initialize(*, coordinator_address: str = "", num_processes: int = 0, process_id: int = -1,
               auto: bool = False, timeout_s: int = 300) -> bool:
  """Join a multi-process run; returns True when one was joined, False for a single process.

  Args:
    coordinator_address: ``host:port`` of process 0's coordinator service.
    num_processes: how many processes take part.
    process_id: this process's index in ``[0, num_processes)``.
    auto: let JAX detect the cluster (TPU pod, SLURM, MPI, k8s) instead.
    timeout_s: how long to wait for every process to connect.
  """
  explicit = bool(coordinator_address) or num_processes > 0 or process_id >= 0
  if not explicit and not auto:
    return False
  if explicit:
    if auto:
      raise UserError("--distributed=auto and an explicit --coordinator_address/"
                      "--num_processes/--process_id were both given; use one or the other.")
    if not coordinator_address or num_processes < 1 or not 0 <= process_id < num_processes:
      raise UserError(
          f"A multi-process run needs all three of --coordinator_address=HOST:PORT, "
          f"--num_processes=N and --process_id=I with 0 <= I < N; got coordinator_address="
          f"{coordinator_address!r}, num_processes={num_processes}, process_id={process_id}. "
          f"Give every process the same address and count and its own id, or use "
          f"--distributed=auto on a cluster JAX can detect (TPU pod, SLURM, MPI).")
    if ":" not in coordinator_address:
      raise UserError(f"--coordinator_address={coordinator_address!r} has no port; write it "
                      f"as HOST:PORT, e.g. 10.0.0.1:1234 (process 0's host).")
  try:
    if explicit:
      jax.distributed.initialize(coordinator_address=coordinator_address,
                                 num_processes=num_processes, process_id=process_id,
                                 initialization_timeout=timeout_s)
    else:
      jax.distributed.initialize(initialization_timeout=timeout_s)
  except (RuntimeError, ValueError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(
        f"Joining the multi-process run failed: {first}. Check that every process was started "
        f"with the same coordinator address and process count, that process 0 is running and "
        f"its port is reachable, and that this was called before any JAX computation."
    ) from e
  return True


def describe() -> str:
  """``process i of n, L local / G global devices (platform)``."""
  return (f"process {jax.process_index()} of {jax.process_count()}, "
          f"{jax.local_device_count()} local / {jax.device_count()} global "
          f"{jax.devices()[0].platform} devices")
