"""Preparing equilibrated Kob-Andersen configurations, resumably.

Protocol (after Kob & Andersen, PRE 51, 4626 (1995), and the equilibration
criterion of Bapst et al. 2020, Methods: configurations sampled from
equilibrium and separated in time by more than τ_α):

  1. start: N particles on a simple cubic grid (no overlaps), 20 % B at
     random, box at the requested density;
  2. melt: NVT at `melt_temperature` (2.0, a simple liquid at ρ = 1.2) for
     `melt_time`;
  3. cool: NVT with the thermostat target ramped linearly to T over
     `cool_time` (NPT at the target pressure if a pressure is given);
  4. equilibrate: successive windows at T, each lasting until the A-particle
     self-ISF measured from the window's start crosses 1/e, i.e. one τ_α
     each; stop once the total equilibration time reaches
     `equilibration_tau_alpha` × the latest τ_α. The last windows' τ_α is the
     state point's τ_α used below and stored in the manifest;
  5. sample: configuration 0 is the equilibrated state, configuration k the
     state `sampling_interval_tau_alpha` × τ_α (≥ 1 τ_α) after k - 1, on one
     trajectory. The driver can run several independent such trajectories
     ("chains", each with its own seeds and directory) in parallel.

Every stage ends in a checkpoint (`SystemState` in an npz, written
atomically) and every stage starts by loading one in a fresh LAMMPS session,
interrupted or not, so a killed and resumed preparation reproduces an
uninterrupted one bit for bit (LAMMPS on one rank is deterministic).
A new thermostat starts at each checkpoint with fresh Nosé-Hoover variables;
this perturbs nothing but the thermostat's own memory of 0.3 τ.
"""

import dataclasses
import math
import os
import time
from typing import Callable, List, Optional

import numpy as np

from glassy_dynamics_tf.io import npz_format
from glassy_dynamics_tf.simulation import engine
from glassy_dynamics_tf.simulation import isf as isf_lib
from glassy_dynamics_tf.simulation import kob_andersen as ka
from glassy_dynamics_tf.simulation import propensity as propensity_lib
from glassy_dynamics_tf.simulation import seeds as seeds_lib

INV_E = math.exp(-1.0)


@dataclasses.dataclass(frozen=True)
class PreparationSettings:
  """How configurations are prepared (times in τ units).

  Attributes:
    temperature: target T, ε_AA/k_B.
    density: ρ of the start (and of the whole run in NVT), σ_AA⁻³.
    pressure: target P for NPT, ε_AA/σ_AA³; NaN for NVT.
    n_particles: N.
    seed: base seed; stages derive theirs with `seeds.derive_seed`.
    melt_temperature: T of the melt.
    melt_time: duration of the melt.
    cool_time: duration of the linear cooling ramp.
    equilibration_tau_alpha: equilibrate for this many τ_α at T.
    sampling_interval_tau_alpha: configurations this many τ_α apart (>= 1).
    max_window_time: cap of one τ_α measurement window (the state point is
      too slow for this budget if it is reached).
    accelerator: LAMMPS accelerator suffix.
    damping: Nosé-Hoover thermostat damping, τ.
    chain: index of this independent trajectory (its seeds derive from it).
  """
  temperature: float
  density: float
  pressure: float
  n_particles: int
  seed: int
  melt_temperature: float = 2.0
  melt_time: float = 10.0
  cool_time: float = 10.0
  equilibration_tau_alpha: float = 10.0
  sampling_interval_tau_alpha: float = 1.0
  max_window_time: float = 1e5
  accelerator: str = "opt"
  damping: float = engine.THERMOSTAT_DAMPING
  chain: int = 0

  @property
  def is_npt(self) -> bool:
    return math.isfinite(self.pressure)


def _save_state(path: str, state: engine.SystemState, **scalars) -> None:
  import io  # pylint: disable=g-import-not-at-top
  arrays = state.as_arrays()
  arrays.update({k: np.asarray(v) for k, v in scalars.items()})
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  npz_format.write_atomic_bytes(path, buffer.getvalue())


def load_state(path: str) -> tuple:
  """Reads a checkpoint: (SystemState, dict of extra scalars/arrays)."""
  with np.load(path, allow_pickle=False) as data:
    arrays = {k: data[k] for k in data.files}
  state = engine.SystemState.from_arrays(arrays)
  extras = {k: v for k, v in arrays.items() if not k.startswith("state_")}
  return state, extras


def _thermostat(sim: engine.KobAndersenSimulation,
                settings: PreparationSettings) -> None:
  if settings.is_npt:
    sim.npt(settings.temperature, settings.pressure,
            temperature_damping=settings.damping)
  else:
    sim.nvt(settings.temperature, damping=settings.damping)


def measure_tau_alpha(sim: engine.KobAndersenSimulation, q: float,
                      max_steps: int) -> tuple:
  """Runs `sim` until the A-particle self-ISF from now crosses 1/e.

  Args:
    sim: a session with its integrator set.
    q: wave number, σ_AA⁻¹.
    max_steps: give up after this many steps.

  Returns:
    (tau_alpha in τ (interpolated; NaN if not reached), steps run).
  """
  state_types = sim.state().types
  is_a = state_types == 0
  start = sim.unwrapped_positions()
  step0 = sim.step
  times, values = [], []
  for steps in propensity_lib.time_grid(max_steps):
    sim.run(step0 + int(steps) - sim.step)
    d = np.linalg.norm(sim.unwrapped_positions() - start, axis=-1)
    times.append(steps * sim.timestep)
    values.append(isf_lib.self_isf(d, q, is_a))
    if values[-1] <= INV_E:
      break
  return isf_lib.crossing_time(times, values, INV_E), sim.step - step0


def prepare(settings: PreparationSettings,
            n_configurations: int,
            work_dir: str,
            log: Callable[[str], None] = print) -> tuple:
  """Makes (or finds) the checkpoints of configurations 0..n-1.

  Args:
    settings: the protocol.
    n_configurations: how many configurations to sample.
    work_dir: directory for checkpoints (created).
    log: progress messages.

  Returns:
    (paths [n] of the configuration checkpoints `parent_XXXXX.npz`,
     tau_alpha in τ).

  Raises:
    RuntimeError: if τ_α exceeds `max_window_time`.
  """
  os.makedirs(work_dir, exist_ok=True)
  dt = ka.TIMESTEP
  q = ka.first_peak_wavenumber(settings.density)
  kwargs = dict(accelerator=settings.accelerator)
  melted = os.path.join(work_dir, "prep_melted.npz")
  cooled = os.path.join(work_dir, "prep_cooled.npz")
  parents = [os.path.join(work_dir, f"parent_{k:05d}.npz")
             for k in range(n_configurations)]
  start_time = time.time()

  # 1-2. start and melt.
  if not os.path.exists(melted):
    box = np.full(3, (settings.n_particles / settings.density)**(1.0 / 3.0))
    positions, types = ka.lattice_configuration(
        settings.n_particles, box,
        seeds_lib.derive_seed(settings.seed, seeds_lib.PREPARATION,
                              settings.chain, 0))
    with engine.KobAndersenSimulation(positions, types, box, **kwargs) as sim:
      sim.set_velocities(settings.melt_temperature,
                         seeds_lib.derive_seed(settings.seed,
                                               seeds_lib.PREPARATION,
                                               settings.chain, 1))
      sim.nvt(settings.melt_temperature, damping=settings.damping)
      sim.run(propensity_lib.steps_for_time(settings.melt_time))
      _save_state(melted, sim.state())
    log(f"preparation: melted at T={settings.melt_temperature} for "
        f"{settings.melt_time} τ ({time.time() - start_time:.1f} s)")

  # 3. cool.
  if not os.path.exists(cooled):
    state, _ = load_state(melted)
    with engine.create_from_state(state, **kwargs) as sim:
      # NVT ramp in both ensembles; in NPT the barostat then finds the
      # density during equilibration.
      sim.nvt(settings.melt_temperature, settings.temperature,
              damping=settings.damping)
      sim.run(propensity_lib.steps_for_time(settings.cool_time))
      _save_state(cooled, sim.state())
    log(f"preparation: cooled to T={settings.temperature} over "
        f"{settings.cool_time} τ ({time.time() - start_time:.1f} s)")

  # 4. equilibrate in windows of one τ_α each.
  window = 0
  taus: List[float] = []
  total = 0.0
  state, _ = load_state(cooled)
  while True:
    path = os.path.join(work_dir, f"prep_equilibration_{window:04d}.npz")
    if os.path.exists(path):
      state, extras = load_state(path)
      taus, total = list(extras["tau_alphas"]), float(extras["total_time"])
    else:
      window_start = time.time()
      with engine.create_from_state(state, **kwargs) as sim:
        _thermostat(sim, settings)
        tau, steps = measure_tau_alpha(
            sim, q, propensity_lib.steps_for_time(settings.max_window_time))
        if not math.isfinite(tau):
          raise RuntimeError(
              f"the self-ISF did not reach 1/e within {settings.max_window_time}"
              f" τ at T={settings.temperature}: this state point is too slow "
              "for the time budget (raise --max_time)")
        state = sim.state()
      taus.append(tau)
      total += steps * dt
      _save_state(path, state, tau_alphas=np.asarray(taus),
                  total_time=total)
      target = settings.equilibration_tau_alpha * max(taus[-2:])
      rate = (time.time() - window_start) / (steps * dt)  # wall s per τ.
      remaining = (max(0.0, target - total) + (n_configurations - 1) *
                   max(1.0, settings.sampling_interval_tau_alpha) * tau)
      log(f"preparation: equilibration window {window}: τ_α = {tau:.3g} τ, "
          f"total {total:.3g} τ of ≥ {target:.3g} τ "
          f"({time.time() - start_time:.1f} s, ETA ~{rate * remaining:.0f} s)")
    window += 1
    tau_alpha = max(taus[-2:])
    if len(taus) >= 2 and total >= settings.equilibration_tau_alpha * tau_alpha:
      break
  if len(taus) >= 3 and abs(taus[-1] / taus[-3] - 1.0) > 0.5:
    log(f"preparation: warning: τ_α still drifting ({taus[-3]:.3g} → "
        f"{taus[-1]:.3g} τ); the system may be ageing")

  # 5. sample configurations along one trajectory.
  interval = propensity_lib.steps_for_time(
      max(1.0, settings.sampling_interval_tau_alpha) * tau_alpha)
  sample_start, n_sampled = time.time(), 0
  for k, path in enumerate(parents):
    if os.path.exists(path):
      state, _ = load_state(path)
      continue
    if k > 0:
      with engine.create_from_state(state, **kwargs) as sim:
        _thermostat(sim, settings)
        sim.run(interval)
        state = sim.state()
    _save_state(path, state, tau_alpha=tau_alpha)
    n_sampled += 1
    eta = (time.time() - sample_start) / n_sampled * (n_configurations - k - 1)
    log(f"preparation: configuration {k + 1}/{n_configurations} sampled "
        f"({time.time() - start_time:.1f} s, ETA {eta:.0f} s)")
  return parents, tau_alpha


def read_tau_alpha(path: str) -> Optional[float]:
  """τ_α stored in a configuration checkpoint, if any."""
  _, extras = load_state(path)
  return float(extras["tau_alpha"]) if "tau_alpha" in extras else None
