"""The README demo: a warm, small Kob-Andersen liquid that runs end to end on
two CPU cores in minutes. Same code as paper scale; only numbers change.

T = 0.9 at ρ = 1.2 is a supercooled but fast state point (τ_α of order 1 τ,
Kob & Andersen, PRE 52, 4134 (1995)), so timescales up to a few τ are cheap.
"""

from glassy_dynamics_tf.configs import default


def get_config():
  config = default.get_config()
  sim = config.simulation
  sim.temperature = 0.9
  sim.density = 1.2
  sim.n_particles = 1000
  sim.n_configurations = 24
  sim.n_runs = 8
  sim.isf_levels = (0.9, 0.7, 0.5, 0.36787944117144233)
  sim.seed = 7

  config.dataset.name = "glassy_dynamics/demo"

  # A smaller network and a larger learning rate than the paper's, so that a
  # few hundred steps on two cores learn something (measured in
  # benchmarks/results/train_step_time.md: 0.22 s/step at N = 1000).
  config.model.num_recurrences = 4
  config.model.latent_size = 32

  config.train.learning_rate = 1e-3
  config.train.num_steps = 3000
  config.train.steps_per_epoch = 250
  # XLA is slower than graph execution on CPU for this model (same benchmark).
  config.train.jit_compile = False
  return config
