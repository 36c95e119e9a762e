"""Fixtures of the analysis tests: random-weight networks and a SavedModel.

The properties tested here (receptive field, exact zeros, the latent graph's
agreement with the network) are structural, so random weights show them;
no test needs a trained model.
"""

import os
import sys

import pytest
import tensorflow as tf

from glassy_dynamics_tf import model as model_lib
from glassy_dynamics_tf.configs import smoke

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TESTS not in sys.path:  # for tests/synthetic_records.py
  sys.path.insert(0, TESTS)

import synthetic_records  # pylint: disable=wrong-import-position


@pytest.fixture(name="make_network", scope="session")
def _make_network():
  """Factory: a seeded random EncodeProcessDecode with variables built."""

  def make(num_recurrences=2, n_outputs=2, latent_size=16, seed=0,
           use_edge_features=True):
    tf.random.set_seed(seed)
    network = model_lib.EncodeProcessDecode(
        latent_size=latent_size, mlp_layers=2,
        num_recurrences=num_recurrences, n_outputs=n_outputs,
        use_edge_features=use_edge_features)
    model_lib.build_variables(network)
    return network

  return make


@pytest.fixture(name="exported", scope="session")
def _exported(tmp_path_factory):
  """A smoke-config model with random weights, exported as a SavedModel.

  Returns:
    (saved_model_dir, keras model, metadata) with standardised targets, so
    the SavedModel's outputs differ from the network's raw outputs.
  """
  exported = synthetic_records.export_random_model(
      smoke.get_config(), str(tmp_path_factory.mktemp("analysis_model")),
      n_particles=150)
  return exported.path, exported.model, exported.metadata
