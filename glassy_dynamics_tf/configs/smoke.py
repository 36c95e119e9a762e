"""Tiny settings for tests: seconds, not minutes. Not physics."""

from glassy_dynamics_tf.configs import default


def get_config():
  config = default.get_config()
  sim = config.simulation
  sim.temperature = 1.0
  sim.density = 1.2
  sim.n_particles = 250
  sim.n_configurations = 4
  sim.n_runs = 2
  sim.isf_levels = (0.9, 0.5)
  sim.seed = 1

  config.dataset.name = "glassy_dynamics/demo"

  config.model.num_recurrences = 2
  config.model.latent_size = 16

  config.train.num_steps = 6
  config.train.steps_per_epoch = 3
  config.train.jit_compile = False
  return config
