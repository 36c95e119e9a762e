"""KA glasses for the Fig. 4 shear study: melt at T = 2, cool to 0.4 over 9 τ.

Usage: python make_glasses.py OUTPUT_DIR N_PARTICLES FIRST_SEED N_GLASSES
Glass g: lattice seed g, velocity seed 1000 + g; NVT (Nosé-Hoover, 0.3 τ),
dt = 0.003; 1000 steps (3 τ) at T = 2, then a linear ramp 2 -> 0.4 over
3000 steps (9 τ). Written as records (no propensity) for analyze_main.py.
"""
import os
import sys
import time

import numpy as np

from glassy_dynamics_tf import io as io_lib
from glassy_dynamics_tf.io import record as record_lib
from glassy_dynamics_tf.simulation import engine
from glassy_dynamics_tf.simulation import kob_andersen as ka

out, n = sys.argv[1], int(sys.argv[2])
first, count = int(sys.argv[3]), int(sys.argv[4])
os.makedirs(out, exist_ok=True)
box = np.full(3, (n / 1.2)**(1 / 3))
for g in range(first, first + count):
  path = os.path.join(out, f"glass_{g:02d}.npz")
  if os.path.exists(path):
    continue
  start = time.time()
  positions, types = ka.lattice_configuration(n, box, seed=g)
  with engine.KobAndersenSimulation(positions, types, box) as sim:
    sim.set_velocities(2.0, 1000 + g)
    sim.nvt(2.0)
    sim.run(1000)
    sim.nvt(2.0, 0.4)
    sim.run(3000)
    state = sim.state()
    thermo = sim.thermo()
  record = record_lib.ConfigurationRecord.create(
      positions=state.positions, types=state.types, box=state.box,
      propensity=np.zeros((0, n)), times=np.zeros(0), temperature=0.4)
  io_lib.save_npz(record, path)
  print(f"{path}: T_kin {thermo['temperature']:.3f}, U/N "
        f"{thermo['potential_energy']:.4f} ({time.time() - start:.1f} s)",
        flush=True)
