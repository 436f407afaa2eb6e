"""gan_jax: generative adversarial nets as pure, composable JAX functions."""

from gan_jax.losses import discriminator_loss, generator_loss, value_function
from gan_jax.models import MaxoutDiscriminator, MLPGenerator, marginal_output_bias
from gan_jax.state import GAN, GANState, init_state, sample_latent
from gan_jax.steps import d_step, g_step, simultaneous_step, train_step
from gan_jax.loop import ArraySource, SamplerSource, TrainLoop, iteration_inputs, run_chunk

__all__ = [
    "GAN", "GANState", "init_state", "sample_latent",
    "d_step", "g_step", "simultaneous_step", "train_step",
    "TrainLoop", "ArraySource", "SamplerSource", "iteration_inputs", "run_chunk",
    "discriminator_loss", "generator_loss", "value_function",
    "MLPGenerator", "MaxoutDiscriminator", "marginal_output_bias",
]
__version__ = "0.1.0"
