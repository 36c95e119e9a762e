"""The registry of pretrained models (glassy_dynamics_tf/pretrained/).

What a user relies on: `--model=t044_s09` gives the published network's
predictions with no file of their own; a wrong or missing name says what
exists and how to produce the missing one; a SavedModel registered from a
workdir loads through the same path as any SavedModel and predicts the same;
every shipped model card is well-formed and its MODEL_CARD.md is the
rendering of its model_card.json.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from glassy_dynamics_tf import prediction
from glassy_dynamics_tf import pretrained
from glassy_dynamics_tf import training
from glassy_dynamics_tf.configs import smoke

import fixtures
import synthetic_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_t044_s09_predicts_the_golden_values_by_name():
  predictor = prediction.load_predictor("t044_s09")
  golden = np.load(fixtures.T044_S09_GOLDEN)
  out = predictor.predict(golden["positions"].astype(np.float32),
                          golden["types"].astype(np.int32),
                          golden["box"].astype(np.float32))
  assert out.shape == (len(golden["types"]), 1)
  np.testing.assert_allclose(out[:, 0], golden["predictions"], atol=1e-5)
  # The time comes from the model card (the checkpoint stores none).
  assert predictor.metadata["times"] == [fixtures.T044_S09_TIME]
  assert predictor.metadata["isf_levels"] == [0.9]
  assert predictor.metadata["pretrained_model"] == "t044_s09"
  assert "pretrained model t044_s09" in predictor.source
  # The registry's checkpoint is the one the other tests import.
  path, entry = prediction.resolve_model("t044_s09")
  assert path == fixtures.T044_S09_CHECKPOINT and entry.kind == "tf1_checkpoint"


def test_unknown_name_lists_the_known_ones():
  with pytest.raises(prediction.PredictionError) as e:
    prediction.load_predictor("t044_s9")
  message = str(e.value)
  assert "unknown pretrained model 't044_s9'" in message
  assert "known: demo, reference_t064, t044_s09" in message


def test_a_path_that_does_not_exist_is_not_taken_for_a_name(tmp_path):
  with pytest.raises(prediction.PredictionError, match="neither a SavedModel"):
    prediction.load_predictor(str(tmp_path / "no" / "such_model"))


def test_missing_declared_model_names_the_file_and_the_commands(tmp_path):
  with pytest.raises(prediction.PredictionError) as e:
    prediction.load_predictor("demo", pretrained_root=str(tmp_path))
  message = str(e.value)
  assert os.path.join(str(tmp_path), "demo", "saved_model",
                      "saved_model.pb") in message
  assert "./demo.sh" in message and "register_pretrained.py" in message
  listing = pretrained.list_models(str(tmp_path))
  assert "demo  [missing" in listing and "t044_s09  [missing" in listing


def _report(metadata, scores):
  """An evaluate_main-style report scoring one model `tiny`."""
  n = len(metadata.times)
  return {
      "dataset": "synthetic", "split": "test", "n_configurations": 2,
      "times": [float(t) for t in metadata.times],
      "isf_levels": [float(x) for x in metadata.isf_levels],
      "methods": {
          "tiny": {"kind": "model", "timescale_indices": list(range(n)),
                   "metrics": {"pearson": {"mean": scores,
                                           "std": [0.01] * n}}},
          "potential_energy": {"kind": "baseline",
                               "timescale_indices": list(range(n)),
                               "metrics": {"pearson": {"mean": [0.0] * n,
                                                       "std": [0.0] * n}}},
      },
  }


def test_registered_saved_model_loads_by_name_and_predicts_the_same(
    tmp_path):
  exported = synthetic_records.export_random_model(
      smoke.get_config(), str(tmp_path / "workdir"))
  root = str(tmp_path / "registry")
  report = _report(exported.metadata, [0.25, 0.5])
  entry = pretrained.register_saved_model(
      "tiny", str(tmp_path / "workdir"), report, summary="A tiny model.",
      source="test_pretrained.py", root=root)
  assert entry.available and entry.kind == "saved_model"
  card = entry.card
  assert [t.test_pearson for t in card.timescales] == [0.25, 0.5]
  assert [t.test_pearson_std for t in card.timescales] == [0.01, 0.01]
  np.testing.assert_allclose(card.times, exported.metadata.times)
  with open(os.path.join(root, "tiny", pretrained.CARD_MD)) as f:
    assert f.read() == pretrained.render_model_card(card)

  by_name = prediction.load_predictor("tiny", pretrained_root=root)
  by_path = prediction.load_predictor(exported.path)
  record = exported.records[0]
  args = (record.positions, record.types, record.box)
  np.testing.assert_array_equal(by_name.predict(*args),
                                by_path.predict(*args))
  assert by_name.metadata["pretrained_model"] == "tiny"
  assert by_name.receptive_field == by_path.receptive_field
  assert "tiny  [saved_model]" in pretrained.list_models(root)

  # A report of another model (one timescale fewer) is refused.
  short = _report(exported.metadata, [0.25, 0.5])
  short["methods"]["tiny"]["timescale_indices"] = [0]
  with pytest.raises(pretrained.PretrainedError, match="another model"):
    pretrained.register_saved_model(
        "tiny2", exported.path, short, summary="x", source="x", root=root)
  with pytest.raises(pretrained.PretrainedError, match="no method 'gnn'"):
    pretrained.register_saved_model(
        "tiny2", exported.path, report, summary="x", source="x",
        method="gnn", root=root)


def test_card_values_are_strict_json(tmp_path):
  card = pretrained.ModelCard(
      name="x", kind="saved_model", asset="saved_model", summary="s",
      source="s", licence="Apache-2.0", data={},
      state_point={"temperature": float("nan")},
      timescales=[pretrained.Timescale(1.0, None)])
  with pytest.raises(pretrained.PretrainedError, match="use None"):
    pretrained.write_model_card(card, str(tmp_path))
  assert pretrained.SAVED_MODEL_DIR == training.SAVED_MODEL_DIR


def test_bad_registrations_name_the_problem(tmp_path):
  with pytest.raises(pretrained.PretrainedError, match="lower-case"):
    pretrained.register_saved_model("My Model", str(tmp_path), None,
                                    summary="x", source="x",
                                    root=str(tmp_path))
  with pytest.raises(pretrained.PretrainedError, match="no exported"):
    pretrained.register_saved_model("mine", str(tmp_path), None,
                                    summary="x", source="x",
                                    root=str(tmp_path))
  directory = tmp_path / "broken"
  directory.mkdir()
  (directory / pretrained.CARD_JSON).write_text(json.dumps({"name": "broken"}))
  with pytest.raises(pretrained.PretrainedError,
                     match=r"model_card.json: missing field\(s\) \['asset'"):
    pretrained.entries(str(tmp_path))


def test_shipped_models_have_consistent_cards():
  available = [e for e in pretrained.entries().values() if e.available]
  assert "t044_s09" in [e.name for e in available]
  for entry in available:
    card = entry.card
    assert card.name == entry.name and card.kind in pretrained.KINDS
    assert card.timescales and card.state_point.get("temperature")
    assert card.licence and card.source and card.summary
    with open(os.path.join(entry.directory, pretrained.CARD_MD)) as f:
      assert f.read() == pretrained.render_model_card(card), (
          f"{entry.directory}: MODEL_CARD.md is stale; rewrite it with "
          f"pretrained.write_model_card")
    if entry.kind == "saved_model":
      info = json.load(open(os.path.join(entry.asset_path, "assets",
                                         "metadata.json")))
      np.testing.assert_allclose(card.times, info["times"], rtol=1e-6)
      # Ours are scored: a card without test Pearson is incomplete.
      assert all(t.test_pearson is not None for t in card.timescales)


def test_predict_main_list_models():
  run = subprocess.run([sys.executable, "predict_main.py", "--list_models"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "t044_s09  [tf1_checkpoint]" in run.stdout
  assert "demo  [" in run.stdout and "reference_t064  [" in run.stdout
