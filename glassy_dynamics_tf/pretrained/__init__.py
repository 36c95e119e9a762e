"""Pretrained models shipped with the package, by name.

Each model is a directory of this package, so a clone or a pip install
carries it (setup.py package_data):

```
 glassy_dynamics_tf/pretrained/NAME/
   model_card.json    what it is (the source of truth): kind, data, state
                      point, and per timescale the time, ISF level and test
                      Pearson; see `ModelCard`
   MODEL_CARD.md      the same for people, written from model_card.json
                      (`render_model_card`; a test keeps them equal)
   saved_model/       kind "saved_model": our `predict` SavedModel
                      (training.export_saved_model, assets/metadata.json)
   NAME.ckpt.*        kind "tf1_checkpoint": a TF1 checkpoint of the 2020
                      release (deepmind_checkpoint.py imports it)
```

`DECLARED` names the models this project publishes and how to produce each;
one whose files are absent (not trained yet, or a partial install) is listed
as missing, and asking for it raises a PretrainedError that names the
missing file and the commands that make it. Any other directory holding a
model_card.json is discovered as well (a model registered locally with
`register_saved_model`).

Nothing here imports TensorFlow: listing models is instant, and
`prediction.load_predictor(NAME)` does the loading.
"""

import dataclasses
import json
import math
import os
import re
import shutil
from typing import Any, Dict, List, Mapping, Optional, Sequence

PRETRAINED_DIR = os.path.dirname(os.path.abspath(__file__))
CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"
SAVED_MODEL_DIR = "saved_model"  # = training.SAVED_MODEL_DIR
KINDS = ("saved_model", "tf1_checkpoint")
_NAME = re.compile(r"[a-z][a-z0-9_]*")

# How to make a missing model, for the error message. `register` is the
# step that turns a trained and evaluated workdir into a pretrained model.
_REGISTER = ("python scripts/register_pretrained.py --name={name} "
             "--model={workdir} --report={report} --summary=... "
             "--source=...")


class PretrainedError(ValueError):
  """An unknown pretrained model name, or one whose files are missing."""


@dataclasses.dataclass(frozen=True)
class Declared:
  """A model this project publishes.

  Attributes:
    name: registry name (--model=NAME).
    kind: "saved_model" or "tf1_checkpoint".
    summary: one line for --list_models when the model is missing.
    produce: the commands that produce it, for the missing-model error.
  """
  name: str
  kind: str
  summary: str
  produce: str


DECLARED: Dict[str, Declared] = {d.name: d for d in (
    Declared(
        "t044_s09", "tf1_checkpoint",
        "published network of Bapst et al. 2020: T = 0.44, self-ISF 0.9",
        "it ships with the package; if it is missing the installation is "
        "incomplete: reinstall, or copy glassy_dynamics/checkpoints/"
        "t044_s09.ckpt.{index,data-00000-of-00001} from "
        "github.com/deepmind/deepmind-research into {directory}/"),
    Declared(
        "demo", "saved_model",
        "the ./demo.sh network: T = 0.9, N = 1000, 4 timescales",
        "./demo.sh (trains demo_output/gnn and writes "
        "demo_output/report/report.json), then " + _REGISTER.format(
            name="demo", workdir="demo_output/gnn",
            report="demo_output/report/report.json")),
    Declared(
        "reference_t064", "saved_model",
        "the T = 0.64 reference network: N = 1000, 7 timescales",
        "scripts/reference_t064.sh (configs/reference_t064.py: simulate, "
        "build, train, evaluate), then " + _REGISTER.format(
            name="reference_t064", workdir="WORKDIR",
            report="REPORT_DIR/report.json")),
)}


@dataclasses.dataclass
class Timescale:
  """One output of a model.

  Attributes:
    time: τ units (None if unknown).
    isf_level: the self-ISF level that defined the time (None if fixed).
    test_pearson: mean over test configurations of the Pearson correlation
      over type-A particles (None if not measured here).
    test_pearson_std: its standard deviation over configurations.
  """
  time: Optional[float]
  isf_level: Optional[float]
  test_pearson: Optional[float] = None
  test_pearson_std: Optional[float] = None


@dataclasses.dataclass
class ModelCard:
  """model_card.json.

  Attributes:
    name: registry name.
    kind: "saved_model" or "tf1_checkpoint".
    asset: the model, relative to the card's directory ("saved_model" or a
      checkpoint prefix such as "t044_s09.ckpt").
    summary: one line.
    source: who made it and how (command, or publication).
    licence: SPDX identifier.
    data: the training data (dataset name, sizes, ...); free-form strings
      and numbers.
    state_point: temperature, density, pressure (LJ units; None if unknown).
    timescales: one per output, in output order.
    evaluation: what the test Pearson was measured on (split, command).
    notes: anything else a user must know.
  """
  name: str
  kind: str
  asset: str
  summary: str
  source: str
  licence: str
  data: Dict[str, Any]
  state_point: Dict[str, Optional[float]]
  timescales: List[Timescale]
  evaluation: str = ""
  notes: str = ""

  def to_json_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json_dict(cls, d: Mapping[str, Any], where: str) -> "ModelCard":
    """Raises PretrainedError naming `where` and the bad field."""
    fields = {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING}
    missing = sorted(required - set(d))
    unknown = sorted(set(d) - fields)
    if missing or unknown:
      raise PretrainedError(f"{where}: missing field(s) {missing}, unknown "
                            f"field(s) {unknown}; expected {sorted(fields)}")
    if d["kind"] not in KINDS:
      raise PretrainedError(f"{where}: kind '{d['kind']}' is not one of "
                            f"{KINDS}")
    try:
      timescales = [Timescale(**t) for t in d["timescales"]]
    except TypeError as e:
      raise PretrainedError(f"{where}: bad timescales entry: {e}") from e
    return cls(**{**d, "timescales": timescales})

  @property
  def times(self) -> List[float]:
    """τ per output, NaN where unknown."""
    return [math.nan if t.time is None else float(t.time)
            for t in self.timescales]


@dataclasses.dataclass(frozen=True)
class Entry:
  """A model of the registry.

  Attributes:
    name: registry name.
    directory: glassy_dynamics_tf/pretrained/NAME (may not exist).
    declared: the DECLARED record, or None for a discovered model.
    card: the parsed model card, or None if absent.
  """
  name: str
  directory: str
  declared: Optional[Declared]
  card: Optional[ModelCard]

  @property
  def kind(self) -> str:
    return self.card.kind if self.card else self.declared.kind

  @property
  def asset_path(self) -> str:
    """SavedModel directory or checkpoint prefix (absolute)."""
    if self.card:
      return os.path.join(self.directory, self.card.asset)
    if self.kind == "saved_model":
      return os.path.join(self.directory, SAVED_MODEL_DIR)
    return os.path.join(self.directory, f"{self.name}.ckpt")

  def missing_files(self) -> List[str]:
    """The files the model needs that are absent (empty: available)."""
    missing = []
    if self.card is None:
      missing.append(os.path.join(self.directory, CARD_JSON))
    if self.kind == "saved_model":
      wanted = [os.path.join(self.asset_path, "saved_model.pb"),
                os.path.join(self.asset_path, "assets", "metadata.json")]
    else:
      wanted = [self.asset_path + ".index"]
    missing += [w for w in wanted if not os.path.exists(w)]
    return missing

  @property
  def available(self) -> bool:
    return not self.missing_files()


def _read_card(directory: str) -> Optional[ModelCard]:
  path = os.path.join(directory, CARD_JSON)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise PretrainedError(f"{path}: unreadable model card: {e}") from e
  card = ModelCard.from_json_dict(data, path)
  if card.name != os.path.basename(directory):
    raise PretrainedError(f"{path}: the card names '{card.name}' but sits "
                          f"in the directory of '{os.path.basename(directory)}'")
  return card


def entries(root: str = PRETRAINED_DIR) -> Dict[str, Entry]:
  """Every declared model (present under `root` or not) and every model
  discovered there, by name, sorted."""
  names = set(DECLARED)
  if os.path.isdir(root):
    names |= {n for n in os.listdir(root)
              if os.path.exists(os.path.join(root, n, CARD_JSON))}
  out = {}
  for name in sorted(names):
    directory = os.path.join(root, name)
    out[name] = Entry(name, directory, DECLARED.get(name),
                      _read_card(directory))
  return out


def looks_like_name(model: str) -> bool:
  """Whether --model could be a registry name (a lower-case identifier);
  callers try it as a path first."""
  return bool(_NAME.fullmatch(model))


def get(name: str, root: str = PRETRAINED_DIR) -> Entry:
  """The available model `name`.

  Raises:
    PretrainedError: unknown name (listing the known ones), or a model whose
      files are missing (naming them and how to produce them).
  """
  known = entries(root)
  if name not in known:
    raise PretrainedError(
        f"unknown pretrained model '{name}'; known: "
        f"{', '.join(known) or '(none)'} (predict_main.py --list_models)")
  entry = known[name]
  missing = entry.missing_files()
  if missing:
    how = (entry.declared.produce.replace("{directory}", entry.directory)
           if entry.declared else f"restore {entry.directory}")
    raise PretrainedError(
        f"pretrained model '{name}' is not in this installation: missing "
        f"{', '.join(missing)}. To produce it: {how}")
  return entry


# ------------------------------------------------------------- listing ---


def _fmt(x: Optional[float], digits: int = 3, signed: bool = False) -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "–"
  return f"{x:+.{digits}f}" if signed else f"{x:.{digits}g}"


def describe(entry: Entry) -> str:
  """A few lines for --list_models."""
  if not entry.available:
    summary = entry.card.summary if entry.card else entry.declared.summary
    return (f"{entry.name}  [missing: predict_main.py --model={entry.name} "
            f"says how to produce it]\n  {summary}")
  card = entry.card
  point = ", ".join(f"{k} {_fmt(v)}" for k, v in card.state_point.items()
                    if v is not None)
  scores = "  ".join(
      f"t={_fmt(t.time)} r={_fmt(t.test_pearson, signed=True)}"
      for t in card.timescales)
  return (f"{entry.name}  [{card.kind}]  {card.summary}\n"
          f"  state point: {point or 'unknown'}; test Pearson per timescale: "
          f"{scores}\n  {entry.directory}/{CARD_MD}")


def list_models(root: str = PRETRAINED_DIR) -> str:
  """All models, available or not, one block each."""
  return "\n".join(describe(e) for e in entries(root).values())


# --------------------------------------------------------- model cards ---


def render_model_card(card: ModelCard) -> str:
  """MODEL_CARD.md for `card` (generated: edit model_card.json instead)."""
  lines = [
      f"# Pretrained model `{card.name}`", "",
      f"<!-- Written from {CARD_JSON} by glassy_dynamics_tf.pretrained."
      "render_model_card; edit the JSON, not this file. -->", "",
      card.summary, "",
      f"- **Use:** `python predict_main.py --model={card.name} "
      "--input=CONF --output=OUT.npz`",
      f"- **Kind:** {card.kind} (`{card.asset}`)",
      f"- **Source:** {card.source}",
      f"- **Licence:** {card.licence}",
      "- **State point:** " + (", ".join(
          f"{k} = {_fmt(v)}" for k, v in card.state_point.items()
          if v is not None) or "unknown") + " (LJ units)",
      "- **Data:** " + "; ".join(f"{k}: {v}" for k, v in card.data.items()),
  ]
  if card.evaluation:
    lines.append(f"- **Evaluation:** {card.evaluation}")
  lines += ["", "| output | t [τ] | self-ISF | test Pearson (type A) |",
            "|---|---|---|---|"]
  for j, t in enumerate(card.timescales):
    score = _fmt(t.test_pearson, signed=True)
    if t.test_pearson is not None and t.test_pearson_std is not None:
      score += f" ± {t.test_pearson_std:.3f}"
    lines.append(f"| {j} | {_fmt(t.time, 4)} | {_fmt(t.isf_level, 4)} | "
                 f"{score} |")
  if card.notes:
    lines += ["", card.notes]
  return "\n".join(lines) + "\n"


def write_model_card(card: ModelCard, directory: str) -> None:
  """Writes model_card.json and MODEL_CARD.md into `directory`."""
  os.makedirs(directory, exist_ok=True)
  try:
    # Strict JSON: NaN or Infinity would not parse elsewhere.
    card_json = json.dumps(card.to_json_dict(), indent=2, ensure_ascii=False,
                           allow_nan=False) + "\n"
  except ValueError as e:
    raise PretrainedError(f"model card of '{card.name}': {e} (use None for "
                          f"unknown values)") from e
  for name, text in ((CARD_JSON, card_json),
                     (CARD_MD, render_model_card(card))):
    tmp = os.path.join(directory, name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(tmp, os.path.join(directory, name))


def timescales_from_report(report: Mapping[str, Any], method: str,
                           where: str = "report") -> List[Timescale]:
  """Per-output time, ISF level and test Pearson of `method` in an
  evaluation report (evaluation.py's layout).

  Raises:
    PretrainedError: `method` not in the report, or fields missing.
  """
  methods = report.get("methods") or {}
  if method not in methods:
    raise PretrainedError(f"{where}: no method '{method}' (found "
                          f"{sorted(methods)}); pass --method")
  entry = methods[method]
  try:
    pearson = entry["metrics"]["pearson"]
    out = []
    for k, j in enumerate(entry["timescale_indices"]):
      level = report["isf_levels"][j]
      out.append(Timescale(
          time=float(report["times"][j]),
          isf_level=None if level is None else float(level),
          test_pearson=pearson["mean"][k], test_pearson_std=pearson["std"][k]))
  except (KeyError, IndexError, TypeError) as e:
    raise PretrainedError(f"{where}: method '{method}' lacks per-timescale "
                          f"Pearson (metrics.pearson.mean/std, "
                          f"timescale_indices, times, isf_levels): {e!r}") from e
  return out


def _finite_or_none(x) -> Optional[float]:
  """A config value as a JSON number: NaN (unset) and None become None."""
  if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
    return None
  return float(x)


def register_saved_model(name: str, saved_model: str,
                         report: Optional[Mapping[str, Any]], *,
                         summary: str, source: str,
                         method: Optional[str] = None,
                         data: Optional[Dict[str, Any]] = None,
                         evaluation: str = "", notes: str = "",
                         licence: str = "Apache-2.0",
                         root: str = PRETRAINED_DIR) -> Entry:
  """Copies an exported SavedModel into the registry and writes its card.

  Times and ISF levels come from the SavedModel's assets/metadata.json;
  state point and data from its stored config; test Pearson per timescale
  from `report` (an evaluate_main.py report.json) for `method` (default:
  the report's only model).

  Args:
    name: registry name (a lower-case identifier).
    saved_model: the SavedModel directory, or a train workdir holding
      saved_model/.
    report: the parsed report.json, or None (scores unknown).
    summary, source, evaluation, notes, licence: card text.
    method: the model's name in the report.
    data: overrides of the card's data section.
    root: registry directory (tests use a temporary one).

  Returns:
    The new Entry (available).

  Raises:
    PretrainedError: bad name, no SavedModel, or a report that does not fit
      the model (another number of timescales).
  """
  if not looks_like_name(name):
    raise PretrainedError(f"name '{name}': use a lower-case identifier "
                          f"(letters, digits, _), e.g. demo")
  source_dir = saved_model
  if not os.path.exists(os.path.join(source_dir, "saved_model.pb")):
    source_dir = os.path.join(saved_model, SAVED_MODEL_DIR)
  metadata_file = os.path.join(source_dir, "assets", "metadata.json")
  if not os.path.exists(os.path.join(source_dir, "saved_model.pb")) or (
      not os.path.exists(metadata_file)):
    raise PretrainedError(
        f"{saved_model}: no exported SavedModel (looked for saved_model.pb "
        f"and assets/metadata.json there and in {SAVED_MODEL_DIR}/)")
  with open(metadata_file, encoding="utf-8") as f:
    metadata = json.load(f)
  times = metadata.get("times") or []
  levels = metadata.get("isf_levels") or [None] * len(times)
  if report is None:
    timescales = [Timescale(t, l) for t, l in zip(times, levels)]
  else:
    models = [m for m, v in (report.get("methods") or {}).items()
              if v.get("kind") == "model"]
    if method is None:
      if len(models) != 1:
        raise PretrainedError(f"the report has models {models}: pass the "
                              f"method to register")
      method = models[0]
    timescales = timescales_from_report(report, method)
    if len(timescales) != len(times):
      raise PretrainedError(
          f"the report scores {len(timescales)} timescale(s) of '{method}' "
          f"but {source_dir} predicts {len(times)}: another model?")
  config = metadata.get("config") or {}
  sim = config.get("simulation") or {}
  card_data = {"dataset": metadata.get("dataset_name") or
                          metadata.get("dataset")}
  for key in ("n_particles", "n_configurations", "n_runs"):
    if sim.get(key) is not None:
      card_data[key] = sim[key]
  card_data.update(data or {})
  card = ModelCard(
      name=name, kind="saved_model", asset=SAVED_MODEL_DIR, summary=summary,
      source=source, licence=licence, data=card_data,
      state_point={k: _finite_or_none(sim.get(k))
                   for k in ("temperature", "density", "pressure")},
      timescales=timescales, evaluation=evaluation, notes=notes)
  directory = os.path.join(root, name)
  target = os.path.join(directory, SAVED_MODEL_DIR)
  tmp = target + ".tmp"
  if os.path.exists(tmp):
    shutil.rmtree(tmp)
  shutil.copytree(source_dir, tmp)
  if os.path.exists(target):
    shutil.rmtree(target)
  os.makedirs(directory, exist_ok=True)
  os.replace(tmp, target)
  write_model_card(card, directory)
  return get(name, root)


def names(root: str = PRETRAINED_DIR) -> Sequence[str]:
  """Registry names, available or not."""
  return list(entries(root))
