"""Fixtures of the simulator tests (the `slow` marker is registered in
pytest.ini)."""

import os
import sys

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TESTS = os.path.join(REPO_ROOT, "tests")
if TESTS not in sys.path:  # for tests/fixtures
  sys.path.insert(0, TESTS)

import fixtures  # pylint: disable=wrong-import-position

DEEPMIND_PICKLE = fixtures.DEEPMIND_PICKLE


@pytest.fixture(scope="session")
def small_liquid_state():
  """A short-melted N = 250 KA liquid at ρ = 1.2: (positions, types, box)."""
  from glassy_dynamics_tf.simulation import engine
  from glassy_dynamics_tf.simulation import kob_andersen as ka
  box = np.full(3, (250 / 1.2)**(1.0 / 3.0))
  positions, types = ka.lattice_configuration(250, box, seed=3)
  with engine.KobAndersenSimulation(positions, types, box) as sim:
    sim.set_velocities(2.0, 11)
    sim.nvt(2.0)
    sim.run(1000)
    state = sim.state()
  return state
