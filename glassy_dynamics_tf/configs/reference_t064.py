"""The T = 0.64 reference: a glassy state point where structure predicts
dynamics well, trained on two CPU cores in about an hour.

Data (simulation section): 120 configurations of N = 1000 at T = 0.64,
ρ = 1.2, 30 isoconfigurational runs each, timescales where the self-ISF
crosses 0.9 ... 0.4 and 1/e (0.1 ... 8.3 τ; τ_α ≈ 8 τ). Simulating it takes
about 65 minutes on 2 cores:

  python simulate_main.py --config=glassy_dynamics_tf/configs/reference_t064.py \
      --output_dir=DATA

and the whole build / train / evaluate is scripts/reference_t064.sh
(docs/results/reference_t064.md has the measured results and learning
curves). The TFDS config is `simulated` (our .npz files at any state point):

  tfds build datasets/glassy_dynamics --config=simulated --manual_dir=DATA \
      --data_dir=TFDS_DIR

Training recipe (departures from the paper, which trains 10^6 steps at a
constant 1e-4 on 400 configurations of N = 4096): the paper's network size
(latent 64, 7 recurrences), one head per timescale, a 10x larger peak
learning rate with warm-up and cosine decay, since we train 8k steps;
checkpoint selection per head on the validation split; the edge input
adds |Δr| and a radial basis (model.edge_inputs; the ablation against the
paper's bare vector is in docs/results/reference_t064.md); the node input
adds rotation-invariant local descriptors (radial symmetry functions and
bond-orientational order in four shells, model.node_descriptors). 8,000
steps: the validation curve of the earlier 12,000-step run (without the
descriptors) was flat after ~6,000.
"""

from glassy_dynamics_tf.configs import default


def get_config():
  config = default.get_config()
  sim = config.simulation
  sim.temperature = 0.64
  sim.density = 1.2
  sim.n_particles = 1000
  sim.n_configurations = 120
  sim.n_runs = 30
  sim.isf_levels = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.36787944117144233)
  sim.seed = 64
  sim.n_chains = 2

  config.dataset.name = "glassy_dynamics/simulated"

  config.model.latent_size = 64
  config.model.num_recurrences = 7
  config.model.edge_encoding = "vector_rbf"
  config.model.node_encoding = "type_descriptors"

  config.train.learning_rate = 1e-3
  config.train.lr_schedule = "warmup_cosine"
  config.train.warmup_steps = 500
  config.train.final_lr_fraction = 0.01
  config.train.num_steps = 8_000
  config.train.steps_per_epoch = 500
  config.train.checkpoint_selection = "per_head"
  # XLA is slower than graph execution on CPU for this model
  # (benchmarks/results/train_step_time.md).
  config.train.jit_compile = False

  config.evaluate.baselines = ("potential_energy", "neighbour_count",
                               "symmetry_ridge", "coarse_grained_ridge",
                               "softness", "soft_modes")
  return config
