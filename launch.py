"""Train a GAN from an experiment config.

  python launch.py --config=experiments/mnist.py --workdir=runs/mnist
  python launch.py --config=experiments/mnist.py:smoke --config.data.manual_dir=/path/to/mnist
  python launch.py --config=experiments/mnist.py --workdir=runs/mnist --mode=eval
      [--checkpoint=best|latest|STEP]   # default: the model selected on validation

Multi-process (one process per host; each runs the same command): on TPU pods, SLURM,
Open MPI or Kubernetes, JAX detects the processes itself; elsewhere give them:
  python launch.py --config=... --coordinator_address=10.0.0.1:1234 --num_processes=2 \
      --process_id=0          # and --process_id=1 on the second host

Any config field can be overridden with --config.<field>=<value>; a misspelt
field is an error. Launching again with the same --workdir resumes from its
newest checkpoint.
"""

import errno
import glob
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow only reads files here

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, optionally with an argument: file.py:smoke.",
    lock_config=True)
_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "eval"],
    "train: train (resuming from the workdir's newest checkpoint); eval: evaluate that "
    "checkpoint and print a table.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "best", "--mode=eval: 'best' (the model selected on validation during "
    "training; the newest checkpoint when none was), 'latest', or a step.")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where the run writes config, metrics, samples and checkpoints "
    "(default: runs/<config name>[_<argument>]).")

_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", "", "Multi-process runs: HOST:PORT of process 0's coordinator "
    "(overrides what JAX detects).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", 0, "Multi-process runs: the number of processes (0: detected).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", -1, "Multi-process runs: this process's index, 0 .. num_processes - 1 "
    "(-1: detected).")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "off"],
    "auto: join the multi-process run JAX detects (Cloud TPU pods, SLURM, Open MPI, "
    "Kubernetes), a single process outside one; off: a single process, always.")


def default_workdir() -> str:
  spec = flags.FLAGS["config"].value_as_string if hasattr(flags.FLAGS["config"],
                                                          "value_as_string") else None
  spec = spec or config_flags.get_config_filename(flags.FLAGS["config"])
  path, _, arg = spec.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("runs", f"{name}_{arg}" if arg else name)


def parse_flags(argv):
  """absl's flag parsing, with a bad flag or config override reported as one paragraph."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # FlagsError, or a config override naming no field (AttributeError)
    text = " ".join(str(e).replace("\\n", " ").split()).replace("\\'", "'")
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
      text = text[1:-1]
    print(f"error: the command line could not be applied: {text}. Each --config.<field>=<value> "
          f"must name a field that the config file's get_config() defines, with a value of "
          f"the field's type; run with --helpfull for all flags.", file=sys.stderr)
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  # Imported here so that --help and flag errors come back without loading JAX or TF.
  from gan_jax.errors import UserError  # pylint: disable=import-outside-toplevel
  from gan_jax.run import preemption  # pylint: disable=import-outside-toplevel

  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # libraries' INFO chatter would bury the progress

  workdir = _WORKDIR.value or default_workdir()
  try:
    with preemption.stops_at_once():  # the training loop takes the signals over inside
      run(workdir)
  except preemption.Stopped as e:
    print(f"Stopped by {e.signal_name} while no chunk of training was running (setting up, "
          f"evaluating or finishing); every checkpoint written so far is intact. Launch the "
          f"same command again to go on.", file=sys.stderr, flush=True)
    sys.exit(0)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
  except OSError as e:
    if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
      raise
    print(f"error: {e.filename or 'a file of the run'} could not be written ({e.strerror}). "
          f"Nothing half-written is taken as a checkpoint: the newest intact one in "
          f"{os.path.join(workdir, 'checkpoints')} is kept. Free space (or pass a --workdir on "
          f"another disk) and launch the same command again to resume from it.",
          file=sys.stderr, flush=True)
    sys.exit(2)


def run(workdir: str) -> None:
  """Join a multi-process run if there is one, then train or evaluate the config."""
  import projects  # pylint: disable=import-outside-toplevel
  from gan_jax.run import distributed, sweep, train  # pylint: disable=import-outside-toplevel

  if distributed.initialize(coordinator_address=_COORDINATOR.value,
                            num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value,
                            enabled=_DISTRIBUTED.value == "auto"):
    print(f"Joined a multi-process run: {distributed.describe()}", flush=True)
  config = load_config()
  experiment = projects.find(config.get("experiment") or "mnist")
  if _MODE.value == "eval":
    for replica in sweep.expand(config):  # one, in the workdir itself, without a sweep
      experiment.evaluate_checkpoint(replica.config, os.path.join(workdir, replica.name),
                                     _CHECKPOINT.value)
  elif config.get("sweep"):
    train.train_sweep(config, workdir, experiment)
  else:
    train.train_and_evaluate(config, workdir, experiment)


def load_config():
  """The config file's config, or one paragraph naming the file and the configs there are."""
  from gan_jax.errors import UserError  # pylint: disable=import-outside-toplevel
  try:
    config = _CONFIG.value
    config.get("experiment")  # a file that did not load raises here
    return config
  except OSError as e:
    path = config_flags.get_config_filename(flags.FLAGS["config"])
    known = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                          "experiments", "*.py")))
    cause = e.__cause__ or e
    why = str(cause).strip().splitlines()[-1].strip()
    raise UserError(f"The config file {path!r} could not be loaded ({type(cause).__name__}: "
                    f"{why}). Pass --config=FILE[:ARGUMENT] naming a config file, e.g. one of "
                    f"{', '.join('experiments/' + os.path.basename(k) for k in known)}.") from e


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main, flags_parser=parse_flags)
