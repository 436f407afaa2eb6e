"""Mode coverage on a ring of 8 Gaussians; minimax vs non-saturating G loss.

Command:
  python launch.py --config=experiments/ring_2d.py --workdir=runs/ring_2d
  python launch.py --config=experiments/ring_2d.py:smoke     # seconds
p_data: 8 Gaussians (std 0.02) evenly spaced on a circle of radius 2. G: 2-d
normal noise -> 128 ReLU -> 128 ReLU -> 2; D: maxout 128x2 -> 128x2 -> 1.
Adam 1e-3 (b1 0.5) for both, Algorithm 1 with k = 1, batch 256, after 200 D
updates against the initial G (D ahead, as early in learning). The same run
is made with each G loss from the same initial parameters (a two-replica sweep,
one vmapped program, each replica in <workdir>/<replica> with its checkpoints,
metrics.jsonl and TensorBoard events); results.json and sweep.csv hold modes
covered (of 8), the share of samples within 3 std of a mode and G's gradient
norm over the first steps; samples.png and curves.png show them. A stopped
or killed run resumes where its checkpoints left off. experiments/ring_sweep.py
adds 8 seeds.
Run time on a 2-core CPU: see README.md (results table).
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = "ring_2d"
  config.seed = 0
  config.batch_size = 256
  config.num_train_steps = 10_000
  config.log_every = 500
  config.eval_every = 500  # mode statistics of num_eval_samples fixed-noise samples
  config.checkpoint_every = 1000
  config.steps_per_call = 500
  config.parallel = "none"  # one device: the model is far too small to split
  config.keep_checkpoints = 2
  config.on_divergence = "stop"  # or "rollback" (see experiments/mnist.py)
  config.max_rollbacks = 3
  config.early_steps = 200  # G's gradient norm is averaged over these first iterations
  config.num_eval_samples = 10_000
  config.min_share = 0.04  # a mode is covered with >= 4% of samples within 3 std of it
  # Both G losses from the same initial parameters: two replicas, trained as one program.
  config.sweep = ({"gan.g_loss": "minimax"}, {"gan.g_loss": "non_saturating"})
  # D updates against the initial G before G moves: the start of learning the paper
  # describes, where D rejects G's poor samples with high confidence.
  config.d_warmup_steps = 200

  config.data = ml_collections.ConfigDict(dict(num_modes=8, radius=2.0, std=0.02))

  config.model = ml_collections.ConfigDict()
  config.model.latent_dim = 2
  config.model.latent_dist = "normal"
  config.model.dtype = "float32"  # compute dtype: "bfloat16" keeps float32 params and losses
  config.model.generator = ml_collections.ConfigDict(dict(
      hidden=(128, 128), activation="relu", output_activation="linear", init_scale=0.1))
  config.model.discriminator = ml_collections.ConfigDict(dict(
      hidden=(128, 128), pieces=2, activation="maxout", init_scale=0.1,
      input_keep=1.0, hidden_keep=1.0))

  config.optimizer = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-3, b1=0.5,
                                                    b2=0.999))
  config.gan = ml_collections.ConfigDict(dict(k=1, update_rule="alternating",
                                              g_loss="non_saturating", real_label=1.0,
                                              grad_norms_every=1))  # G's norm at every step

  if arg == "smoke":
    config.num_train_steps = 100
    config.log_every = config.eval_every = config.checkpoint_every = 50
    config.early_steps = 50
    config.num_eval_samples = 2_000
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; use 'smoke' or nothing.")
  return config
