"""Physical validation of the simulator (slow: run with `-m slow`).

Each test states its source and tolerance. Times are measured on one core
of the development machine; all together take about two minutes.
"""

import numpy as np
import pytest

from glassy_dynamics_tf import periodic
from glassy_dynamics_tf.simulation import engine
from glassy_dynamics_tf.simulation import isf
from glassy_dynamics_tf.simulation import kob_andersen as ka
from glassy_dynamics_tf.simulation import propensity

pytestmark = pytest.mark.slow


def _liquid(n, temperature, anneal_steps, seed=1):
  """Melt at T = 2 (9 τ), cool linearly to T (15 τ), anneal at T."""
  box = np.full(3, (n / 1.2)**(1 / 3))
  positions, types = ka.lattice_configuration(n, box, seed)
  sim = engine.KobAndersenSimulation(positions, types, box)
  sim.set_velocities(2.0, seed)
  sim.nvt(2.0)
  sim.run(3000)
  sim.nvt(2.0, temperature)
  sim.run(5000)
  sim.nvt(temperature)
  sim.run(anneal_steps)
  return sim


def test_nve_energy_conservation():
  # Velocity Verlet with dt = 0.003 conserves energy; the shifted potential
  # has a force jump at r_c that causes a small random-walk drift.
  # Bound: |E(t) - E(0)| / |E(0)| < 5e-4 over 20 000 steps (60 τ), N = 500,
  # T = 1.0 (measured: ~6e-5).
  with _liquid(500, 1.0, 3000) as sim:
    sim.nve()
    thermo = sim.thermo()
    e0 = thermo["potential_energy"] + thermo["kinetic_energy"]
    drift = []
    for _ in range(20):
      sim.run(1000)
      thermo = sim.thermo()
      drift.append(thermo["potential_energy"] + thermo["kinetic_energy"] - e0)
  assert np.max(np.abs(drift)) / abs(e0) < 5e-4


def test_thermostat_holds_temperature():
  # Nosé-Hoover, damping 0.3 τ: the mean kinetic temperature over 60 τ
  # equals the target within ~3 standard errors (single-sample fluctuation
  # T·sqrt(2/(3N)) ≈ 0.03 at N = 500; 200 correlated samples -> ~0.003).
  target = 0.8
  with _liquid(500, target, 2000, seed=2) as sim:
    temperatures = []
    for _ in range(200):
      sim.run(100)
      temperatures.append(sim.thermo()["temperature"])
  assert np.mean(temperatures) == pytest.approx(target, abs=0.01)
  assert np.std(temperatures) == pytest.approx(
      target * np.sqrt(2 / (3 * 500)), rel=0.3)


def test_energy_and_pressure_at_the_paper_state_point():
  # Bapst et al., Nature Physics 16, 448 (2020), Methods: T = 0.44 at
  # P = 2.93 gives ρ ≈ 1.2; the authors' equilibrated T = 0.44
  # configurations have e_pot ≈ -7.04 per particle with the shifted
  # potential (DESIGN.md, measured on their files). We anneal for only
  # 120 τ ≪ τ_α ≈ 5000 τ (their 1/e time), so the glass is younger and
  # higher in energy and pressure: tolerances are one-sided-ish,
  # e in [-7.06, -6.94], P in [2.6, 3.5] (measured: -6.98, 3.30, N = 500).
  with _liquid(500, 0.44, 40000) as sim:
    energies, pressures = [], []
    for _ in range(50):
      sim.run(200)
      thermo = sim.thermo()
      energies.append(thermo["potential_energy"])
      pressures.append(thermo["pressure"])
    state = sim.state()
  assert -7.06 < np.mean(energies) < -6.94
  assert 2.6 < np.mean(pressures) < 3.5
  # The numpy helper baselines use agrees with LAMMPS on the last frame.
  e_numpy = ka.per_particle_potential_energy(state.positions, state.types,
                                             state.box).mean()
  assert e_numpy == pytest.approx(energies[-1], abs=1e-8)


def _g_aa(states, r_max=3.0, bins=150):
  counts = np.zeros(bins)
  edges = np.linspace(0, r_max, bins + 1)
  n_a = 0
  for state in states:
    a = state.positions[state.types == 0]
    n_a = len(a)
    pairs = periodic.neighbour_pairs(a, state.box, r_max)
    counts += 2 * np.histogram(pairs.distances, edges)[0]
  volume = np.prod(states[0].box)
  shell = 4 / 3 * np.pi * (edges[1:]**3 - edges[:-1]**3)
  g = counts / (len(states) * n_a * (n_a / volume) * shell)
  return 0.5 * (edges[1:] + edges[:-1]), g


def test_g_aa_first_peak_near_sigma():
  # Kob & Andersen, PRE 51, 4626 (1995), radial distribution functions of
  # the KA liquid: g_AA(r) peaks at r ≈ 1.0 (g_AB at ≈ 0.8). Tolerance: peak in [0.95, 1.10] at T = 1.0.
  with _liquid(1000, 1.0, 2000) as sim:
    states = []
    for _ in range(10):
      sim.run(200)
      states.append(sim.state())
  r, g = _g_aa(states)
  peak = r[np.argmax(g)]
  assert 0.95 < peak < 1.10
  assert g.max() > 2.5          # a dense liquid's first shell.
  assert np.all(g[r < 0.8] < 0.05)  # hard core.


def test_self_isf_decays_with_tau_alpha_in_literature_range():
  # Kob & Andersen, PRE 52, 4134 (1995), F_s(q = 7.25, t) of the
  # A particles: at T = 1.0 the α relaxation (F_s = 1/e) happens at t of
  # order 1 τ. Band: τ_α in [0.5, 3] τ (wide: the value is read off a
  # figure). Our preparation's τ_α windows give ≈ 1.1-1.5 τ at T = 1.0.
  with _liquid(1000, 1.0, 3000, seed=4) as sim:
    state = sim.state()
  grid = propensity.time_grid(propensity.steps_for_time(10.0))
  runs = [
      propensity.run_trajectory(state.positions, state.types, state.box, 1.0,
                                seed, grid, 7.25)
      for seed in (1, 2, 3, 4)
  ]
  mean_isf = np.mean([run.isf for run in runs], axis=0)
  times = grid * ka.TIMESTEP
  assert mean_isf[0] > 0.99 and mean_isf[-1] < 0.05
  # Monotonic decay up to noise of ~0.02.
  assert np.all(np.diff(mean_isf) < 0.02)
  tau_alpha = isf.crossing_time(times, mean_isf, np.exp(-1))
  assert 0.5 < tau_alpha < 3.0
