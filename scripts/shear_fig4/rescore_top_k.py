"""Re-scores finished shear runs with the k type-A particles of largest
D²_min as the rearranging set (defined for every first event).

Usage: python rescore_top_k.py RUNS_DIR OUTPUT_DIR K
Predictors: the published t044_s09 network (prediction.load_predictor), the
demo GNN (last and first output) and the potential energy.
"""
import dataclasses
import glob
import os
import sys

import numpy as np

from glassy_dynamics_tf import prediction
from glassy_dynamics_tf.analysis import shear as shear_study
from glassy_dynamics_tf.simulation import shear

runs, out, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
paths = sorted(p for p in glob.glob(os.path.join(runs, "*.npz"))
               if not p.endswith(".checkpoint.npz"))
t044 = prediction.load_predictor("t044_s09")  # the pretrained model
demo = prediction.load_predictor("demo_output/gnn")
predictors = {
    "t044_s09": shear_study.model_score_fn(t044.predict, 0),
    "demo_gnn_last": shear_study.model_score_fn(demo.predict, -1),
    "demo_gnn_first": shear_study.model_score_fn(demo.predict, 0),
    "potential_energy": shear_study.potential_energy_score,
}
results = []
for path in paths:
  r = shear.load(path)
  if k > 0:  # else: the runs' own criterion (D²_min > 1 σ²)
    d2min = np.where(r.types == 0, r.d2min, -np.inf)
    r = dataclasses.replace(r, rearranging=shear.rearranging_particles(
        d2min, top_k=k))
  results.append(r)
ids = [os.path.splitext(os.path.basename(p))[0] for p in paths]
report = shear_study.run_shear_study(results, predictors, out, ids=ids,
                                     log=lambda m: None)
print(shear_study.summary(report))
