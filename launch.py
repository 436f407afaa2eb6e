"""Train a GAN from an experiment config: python launch.py --config=experiments/mnist.py"""

from absl import app
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the run writes its outputs.")


def main(argv):
  del argv
  raise SystemExit("launch.py: training end to end is not wired up yet; "
                   "use gan_jax.TrainLoop from Python meanwhile (see README.md).")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
