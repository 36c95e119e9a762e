"""Energy minimisation of Kob-Andersen configurations with LAMMPS.

The one minimiser of the package: the soft-modes baseline (`soft_modes.py`)
needs the inherent structure of a configuration, athermal quasistatic shear
(`shear.py`) quenches a configuration and then re-minimises after every
strain step. Both go through `minimise` (a fresh orthorhombic session) or
`run_minimiser` (a session the caller already holds, any cell).

```
 positions, types, box ──► KobAndersenSimulation (engine.py: shifted KA,
                           orthorhombic box, `opt` or plain lj/cut)
                              │ run 0: U/N before
                              ▼
                           run_minimiser (LAMMPS `minimize`, one or more
                              │ stages, see MinimiserSettings.method)
                              ▼ run 0 (fresh neighbour list and forces)
                           InherentStructure: positions, per-particle and
                           total energy, σ_xy, P, max |F| component, |F|
```

Methods (LAMMPS `min_style`; every stage is one `minimize etol ftol maxiter
maxeval` command, maxeval = 10 × maxiter so that maxiter binds):
  "fire":    FIRE (Bitzek et al., PRL 97, 170201 (2006); LAMMPS' `fire`
             of Guénolé et al., Comput. Mater. Sci. 175, 109584 (2020))
             down to `force_tolerance`. Robust far from a minimum. The
             soft-modes baseline's default, with the 2-norm of the 3n force
             vector (`soft_modes.DEFAULT_MINIMISER`).
  "fire+cg": FIRE down to `fire_force_tolerance`, then conjugate gradients
             (Polak-Ribière, quadratic line search) down to
             `force_tolerance`; if CG stops early (its line search can
             stall within round-off of the minimum), FIRE, which has no line
             search, finishes the job. The shear protocol's default, with
             the largest force component (`norm = "inf"`), and the default
             here.
  "cg":      as "fire+cg" without the first FIRE stage.

Which minimum a hot configuration falls into is not unique (shear.py's
docstring gives measured examples); each method is deterministic on one MPI
rank for a fixed accelerator.

Norms (LAMMPS `min_modify norm`, which is also what `ftol` is compared
with): "two", the 2-norm of the global 3n force vector (thermo `fnorm`,
LAMMPS' default), or "inf", the largest force component of any particle
(thermo `fmax`). The inf-norm does not grow with N; at N = 256 rounding puts
a floor of about 2e-12 ε_AA/σ_AA under the 2-norm (soft_modes.py), so a
tolerance below the floor cannot be reached.

Convergence: `minimise` raises MinimiserError unless the minimiser's own
final force (before the closing `run 0`) is at most `force_tolerance`, or,
with `energy_tolerance` > 0, the last stage stopped before its iteration
limit (LAMMPS stops on either criterion). The closing `run 0` rebuilds the
neighbour list, so the force it reports can differ from the minimiser's
last one by round-off (1.008e-10 measured after stopping at 1e-10).
`run_minimiser` reports convergence and leaves the decision to the caller
(the shear loop warns and goes on, as a single stalled step does not spoil
the stress-strain curve).

Vocabulary:
  positions: [n, 3] float, σ_AA units (wrapped here into [0, box)).
  types: [n] int, 0 = A, 1 = B.
  box: [3] float, orthorhombic box edges, σ_AA units.
  energies: ε_AA, truncated and shifted (kob_andersen.SHIFTED); per particle
    unless said otherwise.
  forces: ε_AA/σ_AA; stress and pressure: ε_AA/σ_AA³.
"""

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from glassy_dynamics_tf.simulation import engine
from glassy_dynamics_tf.simulation import kob_andersen as ka

METHODS = ("fire", "fire+cg", "cg")
NORMS = ("two", "inf")
# LAMMPS thermo keyword of each norm (the same quantity `ftol` is tested on).
NORM_THERMO = {"two": "fnorm", "inf": "fmax"}
# Default tolerances, ε_AA/σ_AA. 1e-10 puts positions within ~1e-12 σ_AA of
# the minimum (force / stiffness), far below any displacement the analyses
# measure, and (2-norm, FIRE) leaves no negative ω² in the Hessian of
# N = 256-1000 inherent structures. FIRE's first stage stops at 1e-4, close
# enough to the minimum for CG's quadratic line search.
FORCE_TOLERANCE = 1e-10
FIRE_FORCE_TOLERANCE = 1e-4
MAX_ITERATIONS = 100_000
# Names of the computes this module adds to a session.
_VIRIAL = "minimise_virial"


class MinimiserError(ValueError):
  """Bad settings or input, LAMMPS failed, or no convergence; the message
  names the setting, the stage and the values."""


@dataclasses.dataclass(frozen=True)
class MinimiserSettings:
  """How LAMMPS minimises the energy (module docstring, "Methods").

  All fields are scalars or strings, so that callers can store them in
  .npz files (shear.ShearSettings.as_arrays).

  Attributes:
    method: "fire", "fire+cg" or "cg" (module docstring).
    force_tolerance: final tolerance on the force in `norm`, ε_AA/σ_AA.
    norm: "two" (2-norm of the 3n force vector) or "inf" (largest force
      component).
    fire_force_tolerance: tolerance of the first FIRE stage of "fire+cg",
      ε_AA/σ_AA, >= force_tolerance (unused by the other methods).
    energy_tolerance: LAMMPS `etol`, relative energy change between
      iterations that also stops a stage; 0 = stop on forces only.
    max_iterations: `maxiter` of each FIRE stage.
    cg_max_iterations: `maxiter` of the CG stage.
    timestep: FIRE's initial timestep, τ (its maximum is 10× this, LAMMPS'
      default `tmax`); the simulator's MD timestep by default.
    accelerator: the engine's pair-style accelerator, engine.ACCELERATORS.
  """
  method: str = "fire+cg"
  force_tolerance: float = FORCE_TOLERANCE
  norm: str = "inf"
  fire_force_tolerance: float = FIRE_FORCE_TOLERANCE
  energy_tolerance: float = 0.0
  max_iterations: int = MAX_ITERATIONS
  cg_max_iterations: int = MAX_ITERATIONS
  timestep: float = ka.TIMESTEP
  accelerator: str = "opt"

  def validate(self) -> None:
    """Checks every field.

    Raises:
      MinimiserError: naming the field, what was expected and found.
    """
    if self.method not in METHODS:
      raise MinimiserError(f"minimiser method must be one of {METHODS}, "
                           f"found {self.method!r}")
    if self.norm not in NORMS:
      raise MinimiserError(f"minimiser norm must be one of {NORMS}, found "
                           f"{self.norm!r}")
    for name in ("force_tolerance", "timestep"):
      value = getattr(self, name)
      if not (math.isfinite(value) and value > 0):
        raise MinimiserError(f"minimiser {name} must be finite and > 0, "
                             f"found {value}")
    if self.method == "fire+cg" and not (
        self.fire_force_tolerance >= self.force_tolerance):
      raise MinimiserError(
          f"minimiser fire_force_tolerance ({self.fire_force_tolerance}) "
          f"must be >= force_tolerance ({self.force_tolerance}) for method "
          "'fire+cg'")
    if not (math.isfinite(self.energy_tolerance) and
            self.energy_tolerance >= 0):
      raise MinimiserError(f"minimiser energy_tolerance must be finite and "
                           f">= 0, found {self.energy_tolerance}")
    for name in ("max_iterations", "cg_max_iterations"):
      if int(getattr(self, name)) < 1:
        raise MinimiserError(f"minimiser {name} must be >= 1, found "
                             f"{getattr(self, name)}")
    if self.accelerator not in engine.ACCELERATORS:
      raise MinimiserError(f"minimiser accelerator must be one of "
                           f"{engine.ACCELERATORS}, found "
                           f"{self.accelerator!r}")

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


class MinimiserRun(NamedTuple):
  """What `run_minimiser` did.

  Fields:
    iterations: minimiser iterations, all stages together.
    force: the minimiser's final force in the settings' norm, ε_AA/σ_AA.
    converged: force <= force_tolerance (or, with energy_tolerance > 0,
      the last stage stopped before its iteration limit).
    stages: the LAMMPS min_styles run, in order, e.g. ("fire", "cg").
    last_stage_exhausted: the last stage used all its iterations.
  """
  iterations: int
  force: float
  converged: bool
  stages: tuple
  last_stage_exhausted: bool


def run_minimiser(lmp, settings: MinimiserSettings) -> MinimiserRun:
  """Minimises the energy of the system held by a LAMMPS session.

  The session may hold any cell (the shear loop's is triclinic). Every
  stage starts with `min_style`, which resets `min_modify`, so the norm is
  set again each time. The CG stage always runs in "fire+cg" and "cg":
  LAMMPS' forces are stale after `change_box` until a minimiser or a run
  recomputes them, so only a minimiser's own result may decide whether to
  go on (CG stops at once if FIRE already converged).

  Args:
    lmp: a `lammps.lammps` instance with a KA system (engine.py's setup).
    settings: MinimiserSettings (validated here).

  Returns:
    MinimiserRun.

  Raises:
    MinimiserError: bad settings, or LAMMPS raised during a stage (the
      message names the stage and carries LAMMPS' first line).
  """
  settings.validate()
  keyword = NORM_THERMO[settings.norm]
  start = int(lmp.get_thermo("step"))
  stages, exhausted = [], False

  def minimize(style, tolerance, max_iterations):
    nonlocal exhausted
    before = int(lmp.get_thermo("step"))
    try:
      lmp.command(f"min_style {style}")
      lmp.command(f"min_modify norm {settings.norm}")
      lmp.command(f"minimize {float(settings.energy_tolerance)!r} "
                  f"{float(tolerance)!r} {int(max_iterations)} "
                  f"{10 * int(max_iterations)}")
    except Exception as e:  # LAMMPS raises a bare Exception.
      raise MinimiserError(
          f"LAMMPS could not minimise the energy: min_style {style} failed "
          f"(overlapping particles?): {_first_line(e)}") from e
    stages.append(style)
    exhausted = int(lmp.get_thermo("step")) - before >= int(max_iterations)

  if settings.method == "fire":
    minimize("fire", settings.force_tolerance, settings.max_iterations)
  else:
    if settings.method == "fire+cg":
      minimize("fire", settings.fire_force_tolerance,
               settings.max_iterations)
    minimize("cg", settings.force_tolerance, settings.cg_max_iterations)
    if lmp.get_thermo(keyword) > settings.force_tolerance:
      minimize("fire", settings.force_tolerance, settings.max_iterations)
  force = float(lmp.get_thermo(keyword))
  converged = force <= settings.force_tolerance or (
      settings.energy_tolerance > 0 and not exhausted)
  return MinimiserRun(
      iterations=int(lmp.get_thermo("step")) - start, force=force,
      converged=bool(converged), stages=tuple(stages),
      last_stage_exhausted=bool(exhausted))


@dataclasses.dataclass(frozen=True)
class InherentStructure:
  """The local energy minimum reached from a configuration, at fixed box.

  Attributes:
    positions: [n, 3] float64, σ_AA, wrapped into [0, box), the input's
      particle order.
    types: [n] int32, 0 = A, 1 = B.
    box: [3] float64, σ_AA (unchanged).
    particle_energies: [n] float64, ε_AA, LAMMPS `pe/atom` (half of each
      pair energy), mean = potential_energy.
    potential_energy: U/N at the minimum, ε_AA.
    initial_potential_energy: U/N of the input, ε_AA.
    stress: σ_xy = −P_xy, virial part, ε_AA/σ_AA³ (the glass's residual
      shear stress; shear.py's sign convention).
    pressure: virial pressure (trace / 3), ε_AA/σ_AA³.
    max_force: largest force component, ε_AA/σ_AA (thermo `fmax`).
    force_norm: 2-norm of the 3n force vector, ε_AA/σ_AA (thermo `fnorm`).
    iterations: minimiser iterations, all stages together.
  """
  positions: np.ndarray
  types: np.ndarray
  box: np.ndarray
  particle_energies: np.ndarray
  potential_energy: float
  initial_potential_energy: float
  stress: float
  pressure: float
  max_force: float
  force_norm: float
  iterations: int


def add_virial_compute(lmp) -> str:
  """Adds the virial pressure compute to a session; returns its name.

  `compute pressure NULL virial` (no kinetic term: velocities play no role
  at T = 0). It is listed in `thermo_style`, so that LAMMPS tallies the
  virial on the steps it outputs (every setup, i.e. every `run 0`).
  """
  lmp.commands_string(f"""
compute {_VIRIAL} all pressure NULL virial
thermo_style custom step pe fmax fnorm c_{_VIRIAL}[4]
""")
  return _VIRIAL


class Observation(NamedTuple):
  """Energy, stress and forces of a session's current positions.

  Fields: potential_energy (U/N, ε_AA), stress (σ_xy = −P_xy, virial,
  ε_AA/σ_AA³), pressure (virial, ε_AA/σ_AA³), max_force and force_norm
  (ε_AA/σ_AA).
  """
  potential_energy: float
  stress: float
  pressure: float
  max_force: float
  force_norm: float


def observe(lmp) -> Observation:
  """A fresh setup (`run 0`) and its energy, virial stress and forces.

  Needs `add_virial_compute` first.
  """
  lmp.command("run 0 post no")
  virial = [lmp.extract_compute(_VIRIAL, 0, 1)[k] for k in range(4)]
  return Observation(
      potential_energy=float(lmp.get_thermo("pe")),
      stress=-float(virial[3]),
      pressure=float(sum(virial[:3]) / 3.0),
      max_force=float(lmp.get_thermo("fmax")),
      force_norm=float(lmp.get_thermo("fnorm")))


def _first_line(error: Exception) -> str:
  """The first line of an exception's message (LAMMPS' are long)."""
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def check_configuration(positions, types, box) -> tuple:
  """Validated float64 positions [n, 3], int32 types [n], float64 box [3].

  Raises:
    MinimiserError: naming the array, the expected and the found shape or
      values.
  """
  positions = np.asarray(positions, np.float64)
  if positions.ndim != 2 or positions.shape[1] != 3 or not len(positions):
    raise MinimiserError(f"positions must have shape [n, 3] with n >= 1, "
                         f"found {list(positions.shape)}")
  if not np.all(np.isfinite(positions)):
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    raise MinimiserError(
        f"positions must be finite, found NaN/inf at particle(s) "
        f"{bad[:10].tolist()}")
  types = np.asarray(types)
  if types.shape != (positions.shape[0],):
    raise MinimiserError(f"types must have shape [{positions.shape[0]}], "
                         f"found {list(types.shape)}")
  if not np.all((types == 0) | (types == 1)):
    raise MinimiserError(f"types must be 0 (A) or 1 (B), found "
                         f"{np.unique(types).tolist()}")
  box = np.asarray(box, np.float64)
  if box.shape != (3,) or not np.all(np.isfinite(box)) or np.any(box <= 0):
    raise MinimiserError(f"box must be 3 finite edges > 0 (orthorhombic), "
                         f"found {box.ravel().tolist()}")
  return positions, types.astype(np.int32), box


def minimise(positions, types, box,
             settings: MinimiserSettings = MinimiserSettings()
             ) -> InherentStructure:
  """Minimises the KA potential energy with LAMMPS at fixed orthorhombic box.

  Args:
    positions: [n, 3] float, σ_AA units, any image.
    types: [n] int, 0 = A, 1 = B.
    box: [3] float, orthorhombic box edges, σ_AA.
    settings: MinimiserSettings (default: FIRE then CG, largest force
      component below 1e-10 ε_AA/σ_AA).

  Returns:
    the InherentStructure.

  Raises:
    MinimiserError: bad settings or input, LAMMPS failed, the minimisation
      did not converge (module docstring), or an energy or force is not
      finite (overlapping particles).
  """
  settings.validate()
  positions, types, box = check_configuration(positions, types, box)
  with engine.KobAndersenSimulation(
      positions, types, box, timestep=settings.timestep,
      accelerator=settings.accelerator, shifted=ka.SHIFTED) as sim:
    lmp = sim.lmp
    add_virial_compute(lmp)
    try:
      initial = observe(lmp).potential_energy
    except Exception as e:  # LAMMPS raises a bare Exception.
      raise MinimiserError(
          f"LAMMPS could not minimise the energy: evaluating the initial "
          f"energy failed: {_first_line(e)}") from e
    if not math.isfinite(initial):
      raise MinimiserError(
          f"LAMMPS could not minimise the energy: the initial potential "
          f"energy is {initial} ε_AA per particle (overlapping particles?)")
    run = run_minimiser(lmp, settings)
    final = observe(lmp)
    energies = sim.potential_energy_per_particle()
    state = sim.state()
  values = (final.potential_energy, final.max_force, final.force_norm,
            run.force)
  if not all(math.isfinite(v) for v in values):
    raise MinimiserError(
        f"LAMMPS could not minimise the energy: non-finite energy or force "
        f"(U/N before {initial:.6g}, after {final.potential_energy}, |F| "
        f"{run.force}); overlapping particles?")
  if not run.converged:
    limit = (settings.cg_max_iterations if run.stages[-1] == "cg" else
             settings.max_iterations)
    how = (f"used all {limit} iterations" if run.last_stage_exhausted else
           "stopped")
    raise MinimiserError(
        f"minimiser did not converge: LAMMPS min_style {run.stages[-1]} "
        f"(method {settings.method!r}) {how} without reaching "
        f"force_tolerance = {settings.force_tolerance} ({settings.norm}-norm "
        f"|F| = {run.force:.3g} ε_AA/σ_AA, U/N {initial:.6g} -> "
        f"{final.potential_energy:.6g}); raise max_iterations or the "
        "tolerance")
  return InherentStructure(
      positions=state.positions, types=state.types, box=state.box,
      particle_energies=energies, potential_energy=final.potential_energy,
      initial_potential_energy=initial, stress=final.stress,
      pressure=final.pressure, max_force=final.max_force,
      force_norm=final.force_norm, iterations=run.iterations)
