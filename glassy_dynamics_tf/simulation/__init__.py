"""Kob-Andersen simulations on LAMMPS and isoconfigurational propensity.

Modules, in the order data flows through them:
  kob_andersen: the model's parameters (KA 1995) and numpy energy helpers.
  engine:       one LAMMPS session holding a KA system (MPI preload, NVT/NPT/
                NVE, unwrapped positions, energies).
  seeds:        deterministic seeds from --seed, configuration and run index.
  preparation:  melt, cool, equilibrate (τ_α windows), sample; checkpointed.
  isf:          self-ISF of the A particles and its crossing times.
  propensity:   one isoconfigurational run on a log time grid; propensity.
  driver:       resumable, parallel state point -> .npz records + manifest.
  minimise:     energy minimisation (FIRE, CG or both) to an inherent
                structure; used by the soft-modes baseline and by shear.
  shear:        athermal quasistatic shear of a quenched glass (Fig. 4).

The package imports LAMMPS lazily (engine.lammps_class), so the numpy parts
work without the [sim] extra.
"""
