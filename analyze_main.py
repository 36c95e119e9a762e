r"""Runs one of the paper's analyses of a trained model.

  python analyze_main.py --study=shell_ablation --model=demo_output/gnn \
    --input=demo_output/simulated --max_configurations=4 \
    --output_dir=/tmp/analysis

  python analyze_main.py --study=correlation_length --model=demo_output/gnn \
    --dataset=glassy_dynamics/demo --data_dir=demo_output/tensorflow_datasets \
    --fields=prediction,propensity --output_dir=/tmp/analysis

Studies (Bapst et al. 2020; glassy_dynamics_tf/analysis/):
  shell_ablation      Extended Data Fig. 8: Pearson vs the graph shells
                      around a centre that the model may see.
  edge_perturbation   Fig. 5c / Extended Data Fig. 9: |Δ prediction| of a
                      centre vs the distance of displaced particles.
  correlation_length  Fig. 5b: spatial correlation C(r) and length ξ of the
                      predictions (or true propensity, or embeddings).
  embedding_map       t-SNE of the learned node embeddings, coloured by
                      propensity.
  shear               Fig. 4: athermal quasistatic shear (LAMMPS) of each
                      quenched configuration up to its first plastic event;
                      ROC-AUC / precision@k of the model output
                      --output_index and of the potential energy for the
                      particles that rearrange (D²_min).
  dataset_size        Extended Data Fig. 1: trains one network per number of
                      training configurations (--sizes), test Pearson and
                      top-10 % accuracy / ROC-AUC vs that number.
  edge_threshold      Extended Data Fig. 2: trains one network per graph
                      cut-off (--cutoffs) x message-passing steps
                      (--recurrences), with and without edge features.
Writes OUTPUT_DIR/<study>.json and <study>.png (embedding_map also .npz) and
prints a summary. The two sweeps train with train_main.py into
SWEEP_ROOT/<point>/ (resumable), from --config and its --config.x.y=v
overrides, and write SWEEP_ROOT/<study>.json and .png (or into --output_dir):

  python analyze_main.py --study=dataset_size \
    --config=glassy_dynamics_tf/configs/demo.py --config.train.num_steps=1000 \
    --dataset=glassy_dynamics/demo --data_dir=demo_output/tensorflow_datasets \
    --sizes=1,4,16 --sweep_root=/tmp/sweeps/dataset_size

See glassy_dynamics_tf/analysis/sweeps.py for paper-scale commands.
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from glassy_dynamics_tf import console  # First: quiets TensorFlow's start-up.
from glassy_dynamics_tf import evaluation
from glassy_dynamics_tf import graphs
from glassy_dynamics_tf.analysis import common
from glassy_dynamics_tf.analysis import correlation_length
from glassy_dynamics_tf.analysis import edge_perturbation
from glassy_dynamics_tf.analysis import embeddings
from glassy_dynamics_tf.analysis import shear
from glassy_dynamics_tf.analysis import shell_ablation
from glassy_dynamics_tf.analysis import sweeps
from glassy_dynamics_tf.io import record as record_lib
from glassy_dynamics_tf.simulation import shear as shear_lib

MODULES = {
    "shell_ablation": shell_ablation,
    "edge_perturbation": edge_perturbation,
    "correlation_length": correlation_length,
    "embedding_map": embeddings,
    "dataset_size": sweeps,
    "edge_threshold": sweeps,
    "shear": shear,
}
STUDIES = tuple(MODULES)

_STUDY = flags.DEFINE_enum("study", None, STUDIES, "The analysis to run.")
_MODEL = flags.DEFINE_string(
    "model", None, "SavedModel directory, train workdir (its saved_model/) "
    "or TF1 checkpoint prefix of the 2020 release (.../t044_s09.ckpt). "
    "Optional only for --study=correlation_length --fields=propensity.")
_INPUT = flags.DEFINE_multi_string(
    "input", [], "Configuration files (.npz ours, .pickle DeepMind), "
    "directories of them, or glob patterns; exclusive with --dataset")
_DATASET = flags.DEFINE_string(
    "dataset", None, "TFDS name, e.g. glassy_dynamics/demo (exclusive with "
    "--input); for the sweeps it replaces config.dataset.name, for training "
    "and scoring.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir.")
_SPLIT = flags.DEFINE_string("split", "test", "TFDS split to analyse.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where the JSON and figure go (dataset_size, "
    "edge_threshold: default --sweep_root).")
_MAX_CONFIGURATIONS = flags.DEFINE_integer(
    "max_configurations", 0, "Analyse at most this many configurations "
    "(0 = all).")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed (centres, "
                             "displacements, t-SNE sample).")
_N_CENTRES = flags.DEFINE_integer(
    "n_centres", 16, "shell_ablation, edge_perturbation: type-A centre "
    "particles per configuration (0 = all).")
_MAX_HOPS = flags.DEFINE_integer(
    "max_hops", 0, "shell_ablation: largest number of graph hops kept "
    "(0 = the model's num_recurrences + 1).")
_SHELL_WIDTH = flags.DEFINE_float(
    "shell_width", 0.5, "edge_perturbation: width Δd of the distance "
    "shells, σ_AA.")
_MAX_DISTANCE = flags.DEFINE_float(
    "max_distance", 0.0, "edge_perturbation: outer edge of the last shell, "
    "σ_AA (0 = half the box).")
_DISPLACEMENT = flags.DEFINE_float(
    "displacement", 0.05, "edge_perturbation: length of each random "
    "displacement, σ_AA.")
_N_DRAWS = flags.DEFINE_integer(
    "n_draws", 1, "edge_perturbation: random displacement sets per centre "
    "and shell.")
_PERTURBATION = flags.DEFINE_enum(
    "perturbation", "positions", list(edge_perturbation.PERTURBATIONS),
    "edge_perturbation: 'positions' moves particles and rebuilds the graph "
    "(any model; edges may appear or vanish at the cut-off); 'fixed_graph' "
    "keeps the unperturbed edge list and changes only the edge vectors "
    "(needs the network's weights).")
_FIELDS = flags.DEFINE_list(
    "fields", ["prediction"], "correlation_length: comma list from "
    f"{list(correlation_length.FIELDS)}.")
_BIN_WIDTH = flags.DEFINE_float("bin_width", 0.1,
                                "correlation_length: bin width, σ_AA.")
_R_MAX = flags.DEFINE_float(
    "r_max", 0.0, "correlation_length: largest r, σ_AA (0 = half the box).")
_FIT_R_MIN = flags.DEFINE_float(
    "fit_r_min", 0.0, "correlation_length: the exponential fit starts at the "
    "peak of C(r) beyond this r, σ_AA.")
_FIT_FLOOR = flags.DEFINE_float(
    "fit_floor", 0.0, "correlation_length: the fit stops where C(r) first "
    "drops to this level (0 = its first zero crossing).")
_MAX_POINTS = flags.DEFINE_integer(
    "max_points", 2000, "embedding_map: type-A particles in the t-SNE map.")
_PERPLEXITY = flags.DEFINE_float("perplexity", 30.0,
                                 "embedding_map: t-SNE perplexity.")
_NEIGHBOURS = flags.DEFINE_integer(
    "neighbours", 10, "embedding_map: k of the neighbour agreement score.")
_OUTPUT_INDEX = flags.DEFINE_integer(
    "output_index", -1, "shear: which model output (timescale) scores the "
    "particles; -1 = the last (the longest time).")
_STRAIN_STEP = flags.DEFINE_float(
    "strain_step", shear_lib.DEFAULT_STRAIN_STEP,
    "shear: strain increment Δγ per energy minimisation.")
_MAX_STRAIN = flags.DEFINE_float(
    "max_strain", shear_lib.DEFAULT_MAX_STRAIN,
    "shear: give up on a configuration without a plastic event at this "
    "strain.")
_FIGURES = flags.DEFINE_bool("figures", True, "Write the PNG figure.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "dataset_size, edge_threshold: base config file of "
    "every network trained, e.g. glassy_dynamics_tf/configs/demo.py; "
    "--config.train.num_steps=1000 etc. apply to every point.",
    lock_config=True)
_SWEEP_ROOT = flags.DEFINE_string(
    "sweep_root", None, "dataset_size, edge_threshold: directory of the "
    "sweep, one train workdir per point; re-running resumes it.")
_NUM_PARALLEL = flags.DEFINE_integer(
    "num_parallel", 1, "dataset_size, edge_threshold: training processes "
    "at once.")
_SIZES = flags.DEFINE_list(
    "sizes", [str(k) for k in sweeps.DEFAULT_SIZES], "dataset_size: "
    "numbers of training configurations, comma list ('all' = the split).")
_CUTOFFS = flags.DEFINE_list(
    "cutoffs", [str(c) for c in sweeps.DEFAULT_CUTOFFS], "edge_threshold: "
    "graph cut-offs, σ_AA, comma list.")
_RECURRENCES = flags.DEFINE_list(
    "recurrences", [str(r) for r in sweeps.DEFAULT_RECURRENCES],
    "edge_threshold: numbers of message-passing steps, comma list.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _STUDY.value:
    raise app.UsageError(f"--study is required, one of {STUDIES}")
  study = _STUDY.value
  if study in sweeps.SWEEPS:
    return _sweep(study)
  if not _OUTPUT_DIR.value:
    raise app.UsageError("--output_dir is required")
  fields = [f.strip() for f in _FIELDS.value if f.strip()]
  needs_network = (
      study == "embedding_map" or
      (study == "edge_perturbation" and
       _PERTURBATION.value == "fixed_graph") or
      (study == "correlation_length" and
       any(f.startswith("embedding") for f in fields)))
  needs_model = not (study == "correlation_length" and
                     set(fields) <= {"propensity"})
  if needs_model and not _MODEL.value:
    raise app.UsageError(f"--model is required for --study={study}")
  inputs = [p.strip() for v in _INPUT.value for p in v.split(",")
            if p.strip()]
  try:
    ids, records = common.load_records(
        inputs, _DATASET.value or "", _SPLIT.value, _DATA_DIR.value,
        _MAX_CONFIGURATIONS.value)
    model = (common.load_model(_MODEL.value, with_network=needs_network)
             if _MODEL.value else None)
    report = _run(study, model, ids, records, fields)
  except (common.AnalysisError, graphs.GraphError,
          record_lib.RecordError, shear.ShearStudyError,
          shear_lib.ShearError) as e:
    # Errors of the user's inputs: the message names the thing.
    sys.exit(f"analyze_main.py: error: {e}")
  print(MODULES[study].summary(report))


def _sweep(study):
  """Trains, scores and reports a sweep (analysis/sweeps.py)."""
  if _CONFIG.value is None:
    raise app.UsageError(f"--config is required for --study={study}, e.g. "
                         "--config=glassy_dynamics_tf/configs/demo.py")
  if not _SWEEP_ROOT.value:
    raise app.UsageError(f"--sweep_root is required for --study={study}")
  overrides = dict(config_flags.get_override_values(flags.FLAGS["config"]))
  if _DATASET.value:
    overrides["dataset.name"] = _DATASET.value
  try:
    sweep = sweeps.builtin_sweep(
        study, config_flags.get_config_filename(flags.FLAGS["config"]),
        overrides, _SIZES.value, _CUTOFFS.value, _RECURRENCES.value)
    result = sweeps.run(sweep, _SWEEP_ROOT.value, _DATA_DIR.value,
                        _SPLIT.value, _NUM_PARALLEL.value,
                        _MAX_CONFIGURATIONS.value, _OUTPUT_DIR.value,
                        _FIGURES.value)
  except (sweeps.SweepError, evaluation.EvaluationError) as e:
    sys.exit(f"analyze_main.py: error: {e}")
  except KeyboardInterrupt:
    sys.exit("analyze_main.py: interrupted; the same command resumes the "
             "sweep")
  print(sweeps.summary(result.report))
  print("wrote " + ", ".join(result.paths))
  if result.failed:
    sys.exit(f"analyze_main.py: {len(result.failed)} of {len(sweep.points)} "
             f"point(s) failed: {', '.join(result.failed)} (logs in "
             f"{_SWEEP_ROOT.value}/<point>/{sweeps.LOG_FILE}); re-run to "
             "retry them")


def _run(study, model, ids, records, fields):
  out, figure, seed = _OUTPUT_DIR.value, _FIGURES.value, _SEED.value
  if study == "shell_ablation":
    return shell_ablation.run(model, ids, records, out, _N_CENTRES.value,
                              _MAX_HOPS.value, seed, figure)
  if study == "edge_perturbation":
    return edge_perturbation.run(
        model, ids, records, out, _N_CENTRES.value, _SHELL_WIDTH.value,
        _MAX_DISTANCE.value, _DISPLACEMENT.value, _N_DRAWS.value, seed,
        _PERTURBATION.value, figure)
  if study == "correlation_length":
    return correlation_length.run(model, ids, records, out, fields,
                                  _BIN_WIDTH.value, _R_MAX.value,
                                  _FIT_R_MIN.value, _FIT_FLOOR.value, figure)
  if study == "shear":
    settings = shear_lib.ShearSettings(strain_step=_STRAIN_STEP.value,
                                       max_strain=_MAX_STRAIN.value)
    predictors = {
        "gnn": shear.model_score_fn(model.predict, _OUTPUT_INDEX.value),
        "potential_energy": shear.potential_energy_score,
    }
    return shear.run_shear_study(records, predictors, out, ids=ids,
                                 settings=settings, figure=figure)
  return embeddings.run(model, ids, records, out, _MAX_POINTS.value,
                        _PERPLEXITY.value, _NEIGHBOURS.value, seed, figure)


if __name__ == "__main__":
  app.run(main)
