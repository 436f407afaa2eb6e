"""The authors' convolutional CIFAR-10 GAN (goodfeli/adversarial cifar10_convolutional.yaml;
the paper's Figure 2 d).

Command (CIFAR's binary archive cifar-10-binary.tar.gz in /path/to/cifar):
  python launch.py --config=experiments/cifar10_convolutional.py \
      --workdir=runs/cifar10_conv --config.data.manual_dir=/path/to/cifar
  python launch.py --config=experiments/cifar10_convolutional.py:smoke \
      --config.data.manual_dir=/path/to/cifar     # tiny players, a few iterations
Settings: the data and G's first two layers of cifar10_fully_connected.py; G's 8000
sigmoid units reshaped to 10x10x80, then a 5x5 transposed convolution of stride 3 to
32x32x3 (linear, U(±0.05)); D: maxout convolutions 32 channels x 2 pieces 8x8 (pad 4, max
pool 4 stride 2), 32x2 8x8 (pad 3, pool 4/2), 192x2 5x5 (pad 3, pool 2/2), then maxout
500x5 and one unit (U(±0.005)); dropout keep 0.8 on the image and 0.5 on each later
layer's input; SGD batch 128, lr 0.004 / 1.000004^t (floor 1e-6), momentum 0.5 -> 0.7 over
epochs 1-250 (312 minibatches an epoch). 500 epochs. No CIFAR-10 result was measured in
this project (see cifar10_fully_connected.py).
"""

import ml_collections

from projects.cifar10.configs import cifar10_fully_connected as fc


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = fc.get_config(None)
  config.batch_size = 128
  config.num_train_steps = 156_000  # 500 epochs of 312 minibatches
  config.model.name = "convolutional"
  config.model.generator.deconv = (10, 10, 80, 5, 3)
  config.model.generator.output_scale = 0.05
  config.model.discriminator.hidden = (500,)
  config.model.discriminator.conv_channels = (32, 32, 192)
  config.optimizer.learning_rate = 0.004
  if arg not in (None, "", "smoke"):
    raise ValueError(f"Unknown config argument {arg!r}; use 'smoke' or nothing.")
  if arg == "smoke":
    fc.smoke(config)
    config.model.generator.hidden = (64, 8 * 10 * 10)
    config.model.generator.deconv = (10, 10, 8, 5, 3)
    config.model.discriminator.conv_channels = (4, 4, 8)
  return config
