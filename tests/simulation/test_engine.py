"""The LAMMPS session: determinism, velocities, unwrapped positions."""

import numpy as np
import pytest

from glassy_dynamics_tf.simulation import engine


def _trajectory(state, seed, segments=(7, 50, 143)):
  with engine.create_from_state(state) as sim:
    sim.set_velocities(1.0, seed)
    sim.nvt(1.0)
    out = []
    for n in segments:
      sim.run(n)
      out.append(sim.unwrapped_positions())
    return np.stack(out)


def test_same_state_and_seed_give_bitwise_same_trajectory(small_liquid_state):
  a = _trajectory(small_liquid_state, 123)
  b = _trajectory(small_liquid_state, 123)
  c = _trajectory(small_liquid_state, 124)
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 1e-6


def test_segmented_run_equals_one_run(small_liquid_state):
  # `run N pre no post no` continues the same trajectory.
  a = _trajectory(small_liquid_state, 5, segments=(100, 100))[-1]
  b = _trajectory(small_liquid_state, 5, segments=(200,))[-1]
  np.testing.assert_array_equal(a, b)


def test_fresh_velocities_have_zero_momentum_and_exact_temperature(
    small_liquid_state):
  with engine.create_from_state(small_liquid_state) as sim:
    sim.set_velocities(0.44, 99)
    v = sim.state().velocities
    n = len(v)
    np.testing.assert_allclose(v.sum(axis=0), 0.0, atol=1e-10)
    # LAMMPS: T = 2 KE / (3N - 3) k_B with the momentum constraint.
    temperature = (v**2).sum() / (3 * n - 3)
    assert temperature == pytest.approx(0.44, rel=1e-10)
    assert sim.thermo()["temperature"] == pytest.approx(0.44, rel=1e-10)


def test_unwrapped_positions_are_continuous(small_liquid_state):
  with engine.create_from_state(small_liquid_state) as sim:
    sim.set_velocities(2.0, 7)
    sim.nvt(2.0)
    previous = sim.unwrapped_positions()
    crossed = 0
    for _ in range(40):
      sim.run(25)
      now = sim.unwrapped_positions()
      # No particle moves more than ~0.5 σ in 25 steps at T = 2.
      assert np.abs(now - previous).max() < 1.0
      previous = now
      state = sim.state()
      crossed += np.count_nonzero(state.images)
    np.testing.assert_allclose(
        state.positions + state.images * state.box, now, atol=1e-9)
    assert crossed > 0


def test_state_round_trip(small_liquid_state):
  with engine.create_from_state(small_liquid_state) as sim:
    state = sim.state()
  for name in ("positions", "velocities", "images", "types", "box"):
    np.testing.assert_array_equal(getattr(state, name),
                                  getattr(small_liquid_state, name))


def test_bad_arguments():
  box = np.full(3, 6.0)
  with pytest.raises(ValueError, match="accelerator"):
    engine.KobAndersenSimulation(np.zeros((2, 3)), [0, 0], box,
                                 accelerator="gpu")
  with engine.KobAndersenSimulation([[1, 1, 1], [3, 3, 3]], [0, 1], box) as sim:
    with pytest.raises(ValueError, match="seed"):
      sim.set_velocities(1.0, 0)
    with pytest.raises(RuntimeError, match="integrator"):
      sim.run(10)
