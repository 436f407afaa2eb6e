"""Faults that must not lose data: reading a workdir a run trains in, a damaged checkpoint
metadata file, an interrupted or failed copy of the selected model, a torn metrics line."""

import errno
import json
import os
import shutil
import types

import ml_collections
import pytest
from conftest import assert_trees_equal, at_step, tiny_state

from gan_jax.run import checkpoint, group
from gan_jax.run.recorder import Recorder


@pytest.fixture
def state():
  return tiny_state()


def saved(workdir, state, steps, **kw):
  ckpt = checkpoint.Checkpointer(workdir, keep=10, **kw)
  for step in steps:
    ckpt.save(at_step(state, step), {"memory": {}})
  return ckpt


def test_a_read_only_checkpointer_creates_removes_and_moves_nothing(state, tmp_path):
  saved(str(tmp_path), state, [10, 20]).close()
  writing = tmp_path / "checkpoints" / f"30{checkpoint.TMP_MARKER}-1"  # a save in progress
  writing.mkdir()
  (writing / "part").write_text("x")
  metadata = tmp_path / "checkpoints" / "20" / "_CHECKPOINT_METADATA"
  metadata.write_text("")  # damaged: a writable Checkpointer would set step 20 aside
  reader = checkpoint.Checkpointer(str(tmp_path), read_only=True)
  assert reader.all_steps() == [10, 20]
  restored, _ = reader.restore_latest_valid(state, report=lambda _: None)
  assert_trees_equal(restored, at_step(state, 10))
  reader.close()
  assert (writing / "part").read_text() == "x"
  assert (tmp_path / "checkpoints" / "20").is_dir()
  assert not (tmp_path / "damaged_checkpoints").exists()
  missing = tmp_path / "mistyped"
  nothing = checkpoint.Checkpointer(str(missing), read_only=True)
  assert nothing.latest_step() is None
  nothing.close()
  assert not missing.exists()


@pytest.mark.parametrize("damage", ["empty", "truncated", "deleted"])
def test_damaged_metadata_is_a_damaged_checkpoint_not_an_old_layout(state, tmp_path, damage):
  ckpt = saved(str(tmp_path), state, [10, 20])
  path = tmp_path / "checkpoints" / "20" / "_CHECKPOINT_METADATA"
  if damage == "deleted":
    path.unlink()
  else:
    path.write_text("" if damage == "empty" else path.read_text()[:40])
  ckpt.reload()
  ckpt.check_layout()  # not refused as a workdir of another layout
  with pytest.raises(checkpoint.DamagedCheckpoint):
    ckpt.restore(state, 20)  # never arrays whose digest was not verified
  reports = []
  restored, _ = ckpt.restore_latest_valid(state, report=reports.append)
  assert_trees_equal(restored, at_step(state, 10))
  assert len(reports) == 1 and "step 20 is damaged" in reports[0]
  assert os.listdir(tmp_path / "damaged_checkpoints") == ["20"]
  ckpt.close()


def selected_run(workdir, state, step):
  """A Run whose checkpoints (steps 10 and ``step``) record ``step`` as the selected model,
  as the driver leaves it when the copy into best/ did not finish."""
  config = ml_collections.ConfigDict({"seed": 0})
  run = group.Run("", config, workdir, saved(workdir, state, [10, step]))
  run.memory = {group.SELECTED: {"metric": "v", "value": 1.0, "generator": "raw", "step": step}}
  return run


def test_a_copy_into_best_cut_short_is_made_again_on_resume(state, tmp_path, capsys):
  workdir = str(tmp_path)
  run = selected_run(workdir, state, 20)
  best = checkpoint.Checkpointer(workdir, keep=1, subdir=checkpoint.BEST)
  best.adopt(run.ckpt, 10)  # the previous selection
  best.close()
  # kill -9 in the middle of copying step 20: a partial temporary copy beside step 10.
  partial = tmp_path / checkpoint.BEST / f"20{checkpoint.TMP_MARKER}-copy"
  shutil.copytree(tmp_path / "checkpoints" / "20", partial)
  for name in os.listdir(partial / "default"):
    if not name.endswith("json"):
      shutil.rmtree(partial / "default" / name, ignore_errors=True)
  run.best = checkpoint.Checkpointer(workdir, keep=1, subdir=checkpoint.BEST)
  group._finish_adoption(run)
  assert run.best.all_steps() == [20]
  assert_trees_equal(run.best.restore(state, 20), at_step(state, 20))
  assert "had not finished; it was made again" in capsys.readouterr().out
  group._finish_adoption(run)  # nothing left to do
  assert "made again" not in capsys.readouterr().out
  run.close()


def test_a_failed_copy_into_best_keeps_the_previous_selection(state, tmp_path, monkeypatch):
  workdir = str(tmp_path)
  run = selected_run(workdir, state, 20)
  best = checkpoint.Checkpointer(workdir, keep=1, subdir=checkpoint.BEST)
  best.adopt(run.ckpt, 10)

  def disk_full(src, dst, **kw):
    os.makedirs(dst)
    raise OSError(errno.ENOSPC, "No space left on device", dst)

  monkeypatch.setattr(shutil, "copytree", disk_full)
  with pytest.raises(OSError, match="No space left"):
    best.adopt(run.ckpt, 20)
  monkeypatch.undo()
  best.close()
  best = checkpoint.Checkpointer(workdir, keep=1, subdir=checkpoint.BEST)
  assert best.all_steps() == [10]
  assert_trees_equal(best.restore(state, 10), at_step(state, 10))
  assert 20 in run.ckpt.all_steps()  # the selected step's checkpoint is still there
  best.close()
  run.close()


def test_an_altered_copy_in_best_is_not_taken_and_the_previous_is_kept(state, tmp_path,
                                                                       monkeypatch):
  workdir = str(tmp_path)
  run = selected_run(workdir, state, 20)
  best = checkpoint.Checkpointer(workdir, keep=1, subdir=checkpoint.BEST)
  best.adopt(run.ckpt, 10)
  real_copytree = shutil.copytree

  def flipping_copy(src, dst, **kw):  # the copy's array bytes differ from the original's
    real_copytree(src, dst, **kw)
    for d, _, files in os.walk(os.path.join(dst, "default")):
      for f in files:
        if os.sep + "d" in d and f != "manifest.ocdbt":
          raw = bytearray(open(os.path.join(d, f), "rb").read())
          raw[len(raw) // 2] ^= 0x01
          open(os.path.join(d, f), "wb").write(bytes(raw))

  monkeypatch.setattr(checkpoint, "shutil", types.SimpleNamespace(
      copytree=flipping_copy, rmtree=shutil.rmtree, move=shutil.move))
  with pytest.raises(checkpoint.DamagedCheckpoint):
    best.adopt(run.ckpt, 20)
  assert 10 in best.all_steps()  # not removed before the new copy was verified
  best.close()
  run.close()


def test_a_torn_last_metrics_line_is_dropped_with_one_line(tmp_path, capsys):
  rows = [{"step": s, "d_loss": 0.5} for s in (25, 50, 75)]
  text = "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 100, "d_lo'
  (tmp_path / "metrics.jsonl").write_text(text)
  recorder = Recorder(str(tmp_path), resume_step=50)
  recorder.close()
  assert recorder.rows == rows[:2]
  out = capsys.readouterr().out
  assert out.count("\n") == 1 and "incomplete" in out and "step 50" in out
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line) for line in lines] == rows[:2]


def test_a_full_disk_during_a_save_is_one_paragraph_and_leaves_the_last_checkpoint(
    state, tmp_path, monkeypatch):
  from gan_jax.errors import UserError

  ckpt = saved(str(tmp_path), state, [10])
  real_save = ckpt._manager.save

  def full_disk(step, **kw):  # orbax gets part-way into the temporary directory, then fails
    tmp = tmp_path / "checkpoints" / f"{step}{checkpoint.TMP_MARKER}-1" / "default"
    tmp.mkdir(parents=True)
    (tmp / "part").write_bytes(b"\0" * 100)
    try:
      raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "part"))
    except OSError as e:
      raise ValueError("orbax wraps the cause") from e

  monkeypatch.setattr(ckpt._manager, "save", full_disk)
  with pytest.raises(UserError) as e:
    ckpt.save(at_step(state, 20))
  message = str(e.value)
  assert "\n" not in message and "step 20" in message and "No space left on device" in message
  assert "the newest intact one is step 10" in message and "launch the same command" in message
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10"]  # nothing half-written left
  monkeypatch.setattr(ckpt._manager, "save", real_save)
  assert_trees_equal(ckpt.restore(state, 10), at_step(state, 10))
  ckpt.save(at_step(state, 20))  # with space again, the same step is written
  assert ckpt.all_steps() == [10, 20]
  ckpt.close()


def test_a_private_copy_of_a_checkpoint_removed_while_copied_raises_oserror(state, tmp_path,
                                                                            monkeypatch):
  ckpt = saved(str(tmp_path), state, [10])
  with checkpoint.private_copy(ckpt, 10) as copy:  # intact: reads back verified
    assert_trees_equal(copy.restore(state, 10), at_step(state, 10))
  copied = []

  def copy_then_rotate(src, dst, **kw):  # retention removes the original mid-copy
    copied.append(src)
    if len(copied) == 2:
      shutil.rmtree(tmp_path / "checkpoints" / "10")
    return shutil.copy2(src, dst, **kw)

  real = shutil.copytree
  monkeypatch.setattr(checkpoint, "shutil", types.SimpleNamespace(
      copytree=lambda s, d: real(s, d, copy_function=copy_then_rotate), rmtree=shutil.rmtree))
  with pytest.raises(OSError):
    with checkpoint.private_copy(ckpt, 10):
      pass
  ckpt.close()
