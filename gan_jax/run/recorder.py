"""What a run records, on process 0: metrics.jsonl, TensorBoard scalars and images, and the
console's progress line."""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _import_tensorboardx():
  """tensorboardX, without PyTorch: its writer imports an installed torch (about 1 s, and
  torch's thread pools in a JAX process) only to accept torch tensors, which are never
  logged here. A torch the process has already imported is left alone."""
  if "torch" in sys.modules:
    import tensorboardX  # pylint: disable=import-outside-toplevel
    return tensorboardX
  sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises, just here
  try:
    import tensorboardX  # pylint: disable=import-outside-toplevel
  finally:
    del sys.modules["torch"]
  return tensorboardX


class Recorder:
  """One run's ``metrics.jsonl`` (one JSON row per log interval) and TensorBoard events.

  Opening it keeps the rows up to ``resume_step`` (those the restored checkpoint covers).
  A line cut off by a crash mid-write is dropped, and the console says so.
  """

  def __init__(self, workdir: str, resume_step: int):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.rows: list[dict[str, Any]] = []
    if os.path.exists(self.path):
      with open(self.path) as f:
        rows, torn = parse_rows(f)
      self.rows = [r for r in rows if r["step"] <= resume_step]
      if torn:
        print(f"warning: {torn} line(s) of {self.path} were incomplete (a write cut off) and "
              f"were dropped; the rows up to step {resume_step} that the checkpoint covers are "
              f"kept.", flush=True)
      self._rewrite()
    self.tensorboard = _import_tensorboardx().SummaryWriter(os.path.join(workdir, "tensorboard"))

  def _rewrite(self) -> None:
    tmp = self.path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in self.rows)
    os.replace(tmp, self.path)

  def truncate(self, step: int) -> None:
    """Forget the rows after ``step`` (a rollback)."""
    self.rows = [r for r in self.rows if r["step"] <= step]
    self._rewrite()

  def log(self, row: dict[str, Any]) -> None:
    self.rows.append(row)
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    for k, v in row.items():
      if k != "step" and isinstance(v, (int, float)):
        self.tensorboard.add_scalar(k, v, row["step"])
    self.tensorboard.flush()

  def close(self) -> None:
    self.tensorboard.close()


def parse_rows(lines: Any) -> tuple[list[dict[str, Any]], int]:
  """The JSON rows with a step among ``lines``, and how many non-blank lines were not."""
  rows, torn = [], 0
  for line in filter(str.strip, lines):
    try:
      row = json.loads(line)
    except ValueError:
      row = None
    if isinstance(row, dict) and isinstance(row.get("step"), int):
      rows.append(row)
    else:
      torn += 1
  return rows, torn


def read_rows(path: str) -> list[dict[str, Any]]:
  """The complete rows of a metrics.jsonl (a line cut off mid-write is left out)."""
  with open(path) as f:
    return parse_rows(f)[0]


def duration(seconds: float) -> str:
  """``4m32s`` or ``1h05m``."""
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def progress_line(label: str, row: dict[str, Any], total: int, rate: float) -> str:
  """``step 6000/10000  epoch 12.0  14.7 it/s  ETA 4m32s  |  D loss ...``."""
  epoch = f"  epoch {row['epoch']:.1f}" if "epoch" in row else ""
  return (f"{label}step {row['step']}/{total}{epoch}  {rate:.1f} it/s  "
          f"ETA {duration((total - row['step']) / max(rate, 1e-9))}  |  D loss "
          f"{row['d_loss']:.4f}  G loss {row['g_loss']:.4f}  {_d_outputs(row)}")


def _d_outputs(row: dict[str, Any]) -> str:
  if "d_real" in row:
    return f"D(x) {row['d_real']:.3f}  D(G(z)) {row['d_fake']:.3f}"
  return f"critic(x) {row['critic_real']:.3f}  critic(G(z)) {row['critic_fake']:.3f}"
