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
  5. production: configuration 0 is the equilibrated state, configuration
     k the state `sampling_interval_tau_alpha` × τ_α (≥ 1 τ_α) after k - 1,
     on one trajectory. The driver can run several independent such
     trajectories ("chains", each with its own seeds and directory) in
     parallel.
  6. reference self-ISF (with ISF levels only): along the same production
     trajectory, the A-particle self-ISF is averaged over time origins every
     τ_α / `isf_origins_per_tau_alpha` (`isf.MultiOriginIsf`), on the common
     log grid of the ensembles; the trajectory goes on past the last
     configuration until the average crosses the lowest level with at least
     `isf_min_origins` origins there. The driver picks the timescales of
     every configuration from this curve (driver.py).

Why the production trajectory and not a pilot isoconfigurational ensemble:
both estimate the same equilibrium F_s(q, t) (fresh Maxwell-Boltzmann
velocities on an equilibrium structure start an equilibrium trajectory, so
the average over structures and velocities is the equilibrium ISF), but a
pilot ensemble averages over one or a few structures, whose own ISFs differ
by ~15 % in time at N = 1000 (the per-configuration 1/e times of the T = 0.9
demo spread over 1.58–2.08 τ with 8 runs each), while the trajectory that
samples the configurations visits a new structure every τ_α and is run
anyway; its time-origin average costs no extra MD unless the trajectory is
shorter than `isf_min_origins` origins plus the lag of the lowest level,
and even then only that tail. The dynamics differ only in the thermostat's
history (Nosé-Hoover with the same damping in both; in NPT preparations the
reference trajectory is NPT while the ensembles are NVT in each
configuration's box).

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
from typing import Callable, List, Optional, Sequence

import numpy as np

from glassy_dynamics_tf.io import npz_format
from glassy_dynamics_tf.simulation import engine
from glassy_dynamics_tf.simulation import isf as isf_lib
from glassy_dynamics_tf.simulation import kob_andersen as ka
from glassy_dynamics_tf.simulation import propensity as propensity_lib
from glassy_dynamics_tf.simulation import seeds as seeds_lib

INV_E = math.exp(-1.0)
# Reference ISF (stage 6): time origins per τ_α, the minimum number of
# origins at the lowest level's crossing (16 origins τ_α/4 apart give the
# 1/e time to ~3 % at N = 1000, a third of the 10 % grid step), and the
# first lag cap, grown by isf.CAP_GROWTH_POINTS while the ISF is still above
# the lowest level there.
ISF_ORIGINS_PER_TAU_ALPHA = 4.0
ISF_MIN_ORIGINS = 16
ISF_INITIAL_LAG_TAU_ALPHA = 2.0


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
    isf_levels: self-ISF levels of the timescales; if any, the reference
      ISF is measured (stage 6) down to the lowest.
    isf_wavenumber: q of the reference ISF, σ_AA⁻¹; None scales 7.25 with
      the equilibrated state's density (as the driver's per-configuration q).
    isf_origins_per_tau_alpha: time origins per τ_α of trajectory.
    isf_min_origins: origins required at the lowest level's crossing lag.
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
  isf_levels: tuple = ()
  isf_wavenumber: Optional[float] = None
  isf_origins_per_tau_alpha: float = ISF_ORIGINS_PER_TAU_ALPHA
  isf_min_origins: int = ISF_MIN_ORIGINS

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
     tau_alpha in τ, the chain's `ReferenceIsf` (also in `prep_isf.npz`)
     or None without ISF levels).

  Raises:
    RuntimeError: if τ_α exceeds `max_window_time`, or the reference ISF
      does not reach the lowest level's stop level within it.
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

  # 5. production: sample configurations along one trajectory and measure
  # the reference self-ISF on it.
  interval = propensity_lib.steps_for_time(
      max(1.0, settings.sampling_interval_tau_alpha) * tau_alpha)
  measuring = bool(settings.isf_levels)
  isf_path = os.path.join(work_dir, "prep_isf.npz")
  if all(os.path.exists(p) for p in parents) and (
      not measuring or os.path.exists(isf_path)):
    return parents, tau_alpha, (load_reference_isf(isf_path) if measuring
                                else None)
  return _produce(settings, n_configurations, work_dir, parents, state,
                  tau_alpha, interval, isf_path, start_time, log)


def _production_path(work_dir: str, k: int) -> str:
  return os.path.join(work_dir, f"prep_production_{k:05d}.npz")


def _run_measuring(sim: engine.KobAndersenSimulation,
                   acc: Optional[isf_lib.MultiOriginIsf], n_steps: int) -> None:
  """Advances `sim` by `n_steps`, feeding `acc` (if any) on its way."""
  if acc is None:
    sim.run(n_steps)
    return
  base = acc.step - sim.step  # trajectory step of the session's step 0.
  target = acc.step + n_steps
  while acc.next_event() <= target:
    event = acc.next_event()
    sim.run(event - base - sim.step)
    acc.record(event, sim.unwrapped_positions())
  sim.run(target - base - sim.step)
  acc.step = target


def _isf_done(acc: isf_lib.MultiOriginIsf, levels: Sequence[float],
              min_origins: int) -> bool:
  """Whether the origin average crosses every level, with at least
  `min_origins` origins at the lag where it crosses the lowest one."""
  mean = acc.mean()
  j = isf_lib.first_crossing_index(mean, min(levels))
  return j >= 0 and acc.isf_count[j] >= min_origins


def _produce(settings, n_configurations, work_dir, parents, state, tau_alpha,
             interval, isf_path, start_time, log) -> tuple:
  """Stage 5: the production trajectory, checkpointed per segment.

  Segment k (>= 1) runs `interval` steps from the state after segment
  k - 1 (segment 0 is the equilibrated state); the state after segment k
  is configuration k's parent. With ISF levels, segments go on after the
  last parent until the time-origin-averaged ISF has crossed the lowest
  level with at least `isf_min_origins` origins there. Each segment ends in
  `prep_production_KKKKK.npz` (state + ISF accumulator; the previous one is
  then deleted), written after the parent, so a kill anywhere recomputes at
  most one segment, identically.
  """
  measuring = bool(settings.isf_levels)
  kwargs = dict(accelerator=settings.accelerator)
  done = sorted(f for f in os.listdir(work_dir)
                if f.startswith("prep_production_") and f.endswith(".npz"))
  if done:
    k = int(done[-1][len("prep_production_"):-len(".npz")])
    state, extras = load_state(os.path.join(work_dir, done[-1]))
    for name in done[:-1]:  # left by a kill between save and delete.
      os.remove(os.path.join(work_dir, name))
  else:
    k, extras = 0, {}
    _save_state(parents[0], state, tau_alpha=tau_alpha)
    if measuring:
      lag_steps = propensity_lib.time_grid(
          propensity_lib.steps_for_time(settings.max_window_time))
      q = settings.isf_wavenumber or ka.first_peak_wavenumber(
          len(state.types) / float(np.prod(state.box)))
      acc = isf_lib.MultiOriginIsf(
          lag_steps,
          origin_interval=propensity_lib.steps_for_time(
              tau_alpha / settings.isf_origins_per_tau_alpha),
          q=q, mask=state.types == 0,
          cap=int(np.searchsorted(
              lag_steps, propensity_lib.steps_for_time(
                  ISF_INITIAL_LAG_TAU_ALPHA * tau_alpha), side="right")),
          stop_level=propensity_lib.stop_level(settings.isf_levels))
      # No origin is open yet, so the reference positions are irrelevant.
      extras = acc.to_arrays(state.positions)
    _save_state(_production_path(work_dir, 0), state, tau_alpha=tau_alpha,
                **extras)
    log(f"preparation: configuration 1/{n_configurations} sampled "
        f"({time.time() - start_time:.1f} s)")
  segment_start, n_run = time.time(), 0

  def finished(k, extras):
    if k < n_configurations - 1:
      return False
    if not measuring:
      return True
    acc = isf_lib.MultiOriginIsf.from_arrays(extras, state.positions)
    if acc.exhausted:
      raise RuntimeError(
          f"the equilibrium self-ISF did not fall to {acc.stop_level:.3g} "
          f"within --max_time={settings.max_window_time} τ at "
          f"T={settings.temperature}; raise --max_time or use higher "
          "--isf_levels")
    return _isf_done(acc, settings.isf_levels, settings.isf_min_origins)

  while not finished(k, extras):
    k += 1
    with engine.create_from_state(state, **kwargs) as sim:
      _thermostat(sim, settings)
      acc = None
      if measuring:
        acc = isf_lib.MultiOriginIsf.from_arrays(extras,
                                                 sim.unwrapped_positions())
      _run_measuring(sim, acc, interval)
      state = sim.state()
      extras = ({} if acc is None else
                acc.to_arrays(sim.unwrapped_positions()))
    if k < n_configurations:
      _save_state(parents[k], state, tau_alpha=tau_alpha)
    path = _production_path(work_dir, k)
    _save_state(path, state, tau_alpha=tau_alpha, **extras)
    previous = _production_path(work_dir, k - 1)
    if os.path.exists(previous):
      os.remove(previous)
    n_run += 1
    rate = (time.time() - segment_start) / n_run  # wall s per segment.
    if k < n_configurations:
      log(f"preparation: configuration {k + 1}/{n_configurations} sampled "
          f"({time.time() - start_time:.1f} s, ETA "
          f"{rate * (n_configurations - k - 1):.0f} s)")
    else:
      log(f"preparation: reference ISF: segment {k} after the last "
          f"configuration, {acc.n_origins} origins so far, "
          f"lags followed up to {acc.lag_steps[acc.cap - 1] * ka.TIMESTEP:.3g}"
          f" τ ({time.time() - start_time:.1f} s)")
  if not measuring:
    return parents, tau_alpha, None
  # Re-read from the checkpoint, as a resumed run would.
  state, extras = load_state(_production_path(work_dir, k))
  acc = isf_lib.MultiOriginIsf.from_arrays(extras, state.positions)
  n = len(acc.mean())
  reference = ReferenceIsf(
      lag_steps=acc.lag_steps[:n], isf_sum=acc.isf_sum[:n],
      isf_count=acc.isf_count[:n], q=acc.q,
      origin_interval_steps=acc.origin_interval, n_origins=acc.n_origins,
      trajectory_steps=acc.step, tau_alpha=tau_alpha)
  import io  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  np.savez(buffer, **reference.as_arrays())
  npz_format.write_atomic_bytes(isf_path, buffer.getvalue())
  reference = load_reference_isf(isf_path)
  crossings = [isf_lib.crossing_time(reference.times, reference.mean, level)
               for level in settings.isf_levels]
  log(f"preparation: reference ISF from {reference.n_origins} time origins "
      f"over {reference.trajectory_steps * ka.TIMESTEP:.4g} τ; crossings "
      + ", ".join(f"{l:.3g}: {t:.4g} τ"
                  for l, t in zip(settings.isf_levels, crossings)))
  return parents, tau_alpha, reference


@dataclasses.dataclass(frozen=True)
class ReferenceIsf:
  """The equilibrium self-ISF of one chain, averaged over time origins.

  Attributes:
    lag_steps: [G] int64, lags in MD steps (a prefix of the common grid).
    isf_sum: [G] float64, sum over origins of the A-particle self-ISF.
    isf_count: [G] int64, origins that reached each lag (non-increasing).
    q: wave number, σ_AA⁻¹.
    origin_interval_steps: MD steps between time origins.
    n_origins: origins opened along the trajectory.
    trajectory_steps: length of the production trajectory, MD steps.
    tau_alpha: the chain's τ_α from equilibration, τ.
  """
  lag_steps: np.ndarray
  isf_sum: np.ndarray
  isf_count: np.ndarray
  q: float
  origin_interval_steps: int
  n_origins: int
  trajectory_steps: int
  tau_alpha: float

  @property
  def times(self) -> np.ndarray:
    """[G] float64 lags, τ."""
    return self.lag_steps * ka.TIMESTEP

  @property
  def mean(self) -> np.ndarray:
    """[G] float64 origin-averaged ISF."""
    return self.isf_sum / self.isf_count

  def as_arrays(self) -> dict:
    return {f.name: np.asarray(getattr(self, f.name))
            for f in dataclasses.fields(self)}


def load_reference_isf(path: str) -> ReferenceIsf:
  with np.load(path, allow_pickle=False) as data:
    return ReferenceIsf(
        lag_steps=data["lag_steps"], isf_sum=data["isf_sum"],
        isf_count=data["isf_count"], q=float(data["q"]),
        origin_interval_steps=int(data["origin_interval_steps"]),
        n_origins=int(data["n_origins"]),
        trajectory_steps=int(data["trajectory_steps"]),
        tau_alpha=float(data["tau_alpha"]))


def read_tau_alpha(path: str) -> Optional[float]:
  """τ_α stored in a configuration checkpoint, if any."""
  _, extras = load_state(path)
  return float(extras["tau_alpha"]) if "tau_alpha" in extras else None
