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
  sim.n_configurations = 48
  sim.n_runs = 16
  sim.isf_levels = (0.9, 0.7, 0.5, 0.36787944117144233)
  sim.seed = 7

  config.dataset.name = "glassy_dynamics/demo"

  # A smaller network and a larger learning rate than the paper's, so that a
  # few thousand steps on two cores learn something (about 0.1 s/step at
  # N = 1000, benchmarks/results/train_step_time.md). 48 configurations of
  # 16 runs: with 24 x 8 the labels are so noisy that the network reached
  # test Pearson 0.29 at τ_α in 3000 steps, with 48 x 16 0.37 (measured).
  config.model.num_recurrences = 4
  config.model.latent_size = 32

  config.train.learning_rate = 1e-3
  config.train.num_steps = 4000
  config.train.steps_per_epoch = 250
  # XLA is slower than graph execution on CPU for this model (same benchmark).
  config.train.jit_compile = False

  # Every baseline; soft modes cost about a second per N = 1000 configuration.
  config.evaluate.baselines = ("potential_energy", "neighbour_count",
                               "symmetry_ridge", "softness", "soft_modes")
  return config
