"""glassy_dynamics TFDS dataset: see glassy_dynamics_dataset_builder.py."""
