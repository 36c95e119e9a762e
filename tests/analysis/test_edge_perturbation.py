"""Tests of analysis/edge_perturbation.py: displacements, shells, the exact
zero response beyond the receptive field, and the study's files."""

import json
import os

import numpy as np
import pytest

from glassy_dynamics_tf import graphs
from glassy_dynamics_tf.analysis import common
from glassy_dynamics_tf.analysis import edge_perturbation
from glassy_dynamics_tf.analysis import shell_ablation

import synthetic_records


def test_random_displacements_have_the_given_length():
  rng = np.random.default_rng(0)
  vectors = edge_perturbation.random_displacements(2000, 0.05, rng)
  np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 0.05,
                             rtol=1e-12)
  # Isotropic: the mean direction vanishes (|mean| ~ 1/sqrt(3 n) = 0.013).
  assert np.linalg.norm(vectors.mean(axis=0)) / 0.05 < 0.06


def test_shell_edges():
  np.testing.assert_allclose(edge_perturbation.shell_edges(0.5, 2.0),
                             [0.0, 0.5, 1.0, 1.5, 2.0])
  np.testing.assert_allclose(edge_perturbation.shell_edges(0.4, 1.0),
                             [0.0, 0.4, 0.8])
  with pytest.raises(common.AnalysisError, match="below one shell"):
    edge_perturbation.shell_edges(0.5, 0.3)


def test_response_vanishes_beyond_num_recurrences_times_cutoff(
    make_network):
  """One message-passing step, cut-off 2: particles that stay further than
  2 σ from the centre cannot change its prediction."""
  model = common.model_from_network(make_network(num_recurrences=1),
                                    [1.0, 2.0])
  record = synthetic_records.make_record(4, n_particles=300)   # box 6.3 σ
  centres = np.flatnonzero(record.types == 0)[:3]
  edges = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
  displacement = 0.05
  result = edge_perturbation.perturbation_response(
      model.predict, record.positions, record.types, record.box, centres,
      edges, displacement, np.random.default_rng(0))
  assert result.response.shape == (3, 5, 2)
  assert (result.counts > 0).all()
  radius = shell_ablation.receptive_field_radius(1, 2.0)
  inner = edges[:-1]
  np.testing.assert_array_equal(
      result.response[:, inner >= radius + displacement], 0.0)
  assert (result.response[:, inner + 0.5 <= radius] > 1e-6).all()
  # Shell counts: particles (the centre excluded) by minimum-image distance.
  from glassy_dynamics_tf import periodic  # pylint: disable=g-import-not-at-top
  d = np.linalg.norm(periodic.minimum_image(
      record.positions - record.positions[centres[0]], record.box), axis=1)
  np.testing.assert_array_equal(
      result.counts[0], [np.sum((d >= a) & (d < b)) for a, b in
                         zip(edges[:-1], edges[1:])])


def test_fixed_graph_predict_agrees_with_the_model(make_network):
  network = make_network(num_recurrences=2)
  model = common.model_from_network(network, [1.0, 2.0],
                                    target_mean=[0.3, 0.6],
                                    target_std=[0.1, 0.2])
  record = synthetic_records.make_record(5, n_particles=200)
  predict = edge_perturbation.fixed_graph_predict(
      network, record.positions, record.box, target_mean=[0.3, 0.6],
      target_std=[0.1, 0.2])
  np.testing.assert_allclose(
      predict(record.positions, record.types, record.box),
      model.predict(record.positions, record.types, record.box), atol=2e-6)
  with pytest.raises(common.AnalysisError, match="shape"):
    predict(record.positions[:10], record.types[:10], record.box)


def test_fixed_graph_response_vanishes_beyond_num_recurrences_hops(
    make_network):
  """On a fixed edge list even large moves of particles more than R hops
  away change nothing."""
  network = make_network(num_recurrences=1)
  record = synthetic_records.make_record(6, n_particles=300)
  centre = int(np.flatnonzero(record.types == 0)[0])
  predict = edge_perturbation.fixed_graph_predict(network, record.positions,
                                                  record.box)
  edges = np.array([0.0, 1.5, 2.0, 3.0])
  result = edge_perturbation.perturbation_response(
      predict, record.positions, record.types, record.box, [centre], edges,
      0.3, np.random.default_rng(1), n_draws=2)
  graph = graphs.build_graph(record.positions, record.box, 2.0)
  hops = shell_ablation.hop_distances(graph, 300, [centre])[0]
  assert hops[hops > 1].size  # the far shell holds non-neighbours only
  assert (result.response[0, :2] > 1e-4).all()
  np.testing.assert_array_equal(result.response[0, 2], 0.0)


def test_run_writes_report_and_figure(make_network, tmp_path):
  model = common.model_from_network(make_network(num_recurrences=1),
                                    [0.5, 2.0])
  records = synthetic_records.make_records(2, n_particles=250)
  report = edge_perturbation.run(model, ["a", "b"], records, str(tmp_path),
                                 n_centres=2, shell_width=0.5, seed=3)
  with open(tmp_path / "edge_perturbation.json") as f:
    written = json.load(f)
  assert os.path.getsize(tmp_path / "edge_perturbation.png") > 0
  half_box = float(records[0].box[0]) / 2
  assert written["shell_edges"][-1] == pytest.approx(
      0.5 * int(half_box / 0.5))
  assert written["receptive_field_radius"] == 2.0
  mean = common.float_array(written["response"]["mean"])
  assert mean.shape == (len(written["shell_centres"]), 2)
  assert np.nanmax(common.float_array(
      written["response"]["normalised"])) == pytest.approx(1.0)
  assert written["perturbation"] == "positions"
  assert "decay" in edge_perturbation.summary(report)
  with pytest.raises(common.AnalysisError, match="exceeds half"):
    edge_perturbation.run(model, ["a"], records[:1], str(tmp_path),
                          max_distance=10.0)
  no_network = common.AnalysisModel(model.predict, model.metadata, "m")
  with pytest.raises(common.AnalysisError, match="needs the network"):
    edge_perturbation.run(no_network, ["a"], records[:1], str(tmp_path),
                          perturbation="fixed_graph")
