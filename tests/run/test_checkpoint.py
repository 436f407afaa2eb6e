"""Checkpointer: retention, verification by SHA-256, fallback past damaged checkpoints."""

import os

import pytest
from conftest import assert_trees_equal, at_step, tiny_state

from gan_jax.errors import UserError
from gan_jax.run import checkpoint


@pytest.fixture
def state():
  return tiny_state()


def data_files(workdir, step):
  root = os.path.join(workdir, "checkpoints", str(step), "default")
  return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
          if os.sep + "d" in d and f != "manifest.ocdbt"]


def test_keeps_the_newest_n_plus_every_mth(state, tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2, keep_every=20)
  for step in range(5, 55, 5):
    ckpt.save(at_step(state, step))
  assert ckpt.all_steps() == [20, 40, 45, 50]
  assert_trees_equal(ckpt.restore(state, 40), at_step(state, 40))
  ckpt.close()


def test_an_altered_checkpoint_fails_its_digest_and_the_previous_is_used(state, tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=5)
  for step in (10, 20):
    ckpt.save(at_step(state, step), {"config": "{}"})
  for path in data_files(str(tmp_path), 20):  # same sizes, different bytes
    raw = bytearray(open(path, "rb").read())
    raw[len(raw) // 2] ^= 0x01
    open(path, "wb").write(bytes(raw))
  with pytest.raises(checkpoint.DamagedCheckpoint):
    ckpt.restore(state, 20)
  reports = []
  restored, meta = ckpt.restore_latest_valid(state, report=reports.append)
  assert_trees_equal(restored, at_step(state, 10)) and meta["config"] == "{}"
  assert len(reports) == 1 and "the checkpoint at step 20 is damaged" in reports[0]
  assert ckpt.all_steps() == [10]
  assert os.listdir(tmp_path / "damaged_checkpoints") == ["20"]
  ckpt.save(at_step(state, 20))  # training through step 20 again writes a good one
  assert ckpt.all_steps() == [10, 20]
  ckpt.close()


def test_every_checkpoint_damaged_is_an_error_naming_them(state, tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(at_step(state, 10))
  for path in data_files(str(tmp_path), 10):
    os.truncate(path, 3)
  with pytest.raises(UserError, match=r"Every checkpoint in .* is damaged \(steps 10;"):
    ckpt.restore_latest_valid(state, report=lambda _: None)
  ckpt.close()


def test_a_leftover_temporary_directory_is_not_a_checkpoint_and_is_removed(state, tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(at_step(state, 10))
  ckpt.close()
  leftover = tmp_path / "checkpoints" / "20.orbax-checkpoint-tmp-123"
  leftover.mkdir()
  (leftover / "partial").write_bytes(b"\0" * 10)
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert ckpt.latest_step() == 10
  assert not leftover.exists()
  ckpt.close()
