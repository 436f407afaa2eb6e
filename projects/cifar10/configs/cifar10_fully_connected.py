"""The authors' fully connected CIFAR-10 GAN (goodfeli/adversarial cifar10_fully_connected.yaml;
the paper's Figure 2 c).

Command (CIFAR's binary archive cifar-10-binary.tar.gz in /path/to/cifar):
  python launch.py --config=experiments/cifar10_fully_connected.py \
      --workdir=runs/cifar10_fc --config.data.manual_dir=/path/to/cifar
  python launch.py --config=experiments/cifar10_fully_connected.py:smoke \
      --config.data.manual_dir=/path/to/cifar     # tiny players, a few iterations
Settings: data = CIFAR-10 train[:40000] (validation train[40000:]), each image globally
contrast-normalised to norm 55 (pylearn2's gcn: 55.); G 100 -> 8000 ReLU -> 8000 sigmoid
-> 3072 linear (U(±0.05), the output U(±0.5)); D maxout 1600x5 -> maxout 1600x5 -> 1
(U(±0.005)), dropout keep 0.8 on the input and 0.5 on hidden units; uniform noise;
simultaneous updates, non-saturating G loss; SGD batch 100, lr 0.025 / 1.000004^t (floor
1e-6), momentum 0.5 -> 0.7 over epochs 1-250 (400 minibatches an epoch). The yaml sets no
length: 500 epochs here. No CIFAR-10 result was measured in this project: the runs need a
GPU (G alone has 89M parameters) and these machines hold no copy of CIFAR-10.
"""

import ml_collections

from projects.mnist.configs import mnist


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = mnist.get_config(None)  # the run's fields; data, model and evaluation replaced
  config.experiment = "cifar10"  # projects/cifar10
  config.num_train_steps = 200_000  # 500 epochs of 400 minibatches
  config.eval_every = 4_000
  config.checkpoint_every = 4_000
  config.keep_every = 40_000
  config.data = ml_collections.ConfigDict(dict(
      name="cifar10", manual_dir="", data_dir="", verify_checksum=True))
  config.model = ml_collections.ConfigDict(dict(
      name="fully_connected", latent_dim=100, latent_dist="uniform", dtype="float32"))
  config.model.generator = ml_collections.ConfigDict(dict(
      hidden=(8000, 8000), activations="relu,sigmoid", init_scale=0.05,
      output_scale=0.5))
  config.model.discriminator = ml_collections.ConfigDict(dict(
      hidden=(1600, 1600), pieces=5, init_scale=0.005, input_keep=0.8,
      hidden_keep=0.5))
  config.optimizer.learning_rate = 0.025
  del config["evaluation"]
  config.gan.grad_norms = False
  if arg not in (None, "", "smoke"):
    raise ValueError(f"Unknown config argument {arg!r}; use 'smoke' or nothing.")
  if arg == "smoke":
    smoke(config)
  return config


def smoke(config: ml_collections.ConfigDict) -> None:
  """Small players and a few iterations: the data, the driver and the figures end to end."""
  config.num_train_steps = 20
  config.log_every = 10
  config.eval_every = 10
  config.checkpoint_every = 10
  config.steps_per_call = 10
  config.batch_size = 8
  config.model.generator.hidden = (64, 64)
  config.model.discriminator.hidden = tuple(16 for _ in config.model.discriminator.hidden)
