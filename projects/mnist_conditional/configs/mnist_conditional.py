"""A conditional GAN on MNIST, p(x | digit): Mirza & Osindero (2014)'s MLP players.

Command:
  python launch.py --config=experiments/mnist_conditional.py --workdir=runs/mnist_conditional
  python launch.py --config=experiments/mnist_conditional.py:smoke
  python launch.py --config=experiments/mnist_conditional.py:label_concat --workdir=...
  python launch.py --config=experiments/mnist_conditional.py --workdir=runs/mnist_conditional \
      --mode=eval      # scores the model selected on validation; writes class_grid.png
Settings (their section 4.1): z 100-d uniform -> 200 ReLU and the one-hot label -> 1000 ReLU,
joined -> 1200 ReLU -> 784 sigmoid; D: x -> maxout 240x5 and the label -> maxout 50x5,
joined -> maxout 240x4 -> sigmoid; dropout 0.5 on hidden units of both (and keep 0.8 on D's
pixels, as the unconditional run); SGD batch 100, lr 0.1 decaying by 1.00004 a step to
1e-6, momentum 0.5 -> 0.7; the model selected on validation Parzen. Everything else (data,
splits, evaluation, the EMA of G beside it, selection with the FD guard) is
experiments/mnist.py's. Samples are scored with their labels spread evenly over the
digits; the feature metrics add the classifier's accuracy on the labels asked for and the
per-digit Fréchet distance.

Variant ``label_concat`` (combines with ``smoke`` and ``gaussian``, e.g. ``:label_concat,smoke``):
the paper's own players and settings (experiments/mnist.py's, unchanged) with the one-hot
label joined to G's noise and to D's pixels (never dropped out): section 7's "adding c as
input to both G and D" taken literally, without Mirza & Osindero's separate branches and G
dropout.
"""

import ml_collections

from projects.mnist.configs import mnist


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variants = set(arg.split(",")) if arg else set()
  if variants - {"label_concat", "smoke", "gaussian"}:
    raise ValueError(f"Unknown config argument {arg!r}; use any of 'label_concat', 'smoke' "
                     f"and 'gaussian', comma-separated, or nothing.")
  config = mnist.get_config(",".join(sorted(variants - {"label_concat"})) or None)
  config.experiment = "mnist_conditional"  # projects/mnist_conditional
  if "label_concat" in variants:
    config.model.name = "label_concat"  # mnist.py's players and settings, the label joined
    return config
  config.model.name = "conditional_mlp_maxout"
  config.model.generator = ml_collections.ConfigDict(dict(
      z_hidden=200, cond_hidden=1000, joint_hidden=1200, hidden_keep=0.5, init_scale=0.05))
  config.model.discriminator = ml_collections.ConfigDict(dict(
      x_hidden=240, cond_hidden=50, joint_hidden=240, pieces=5, joint_pieces=4,
      input_keep=0.8, hidden_keep=0.5, init_scale=0.005))
  config.optimizer.decay_factor = 1.00004
  return config
