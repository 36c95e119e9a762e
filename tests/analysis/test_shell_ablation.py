"""Tests of analysis/shell_ablation.py: hop distances, the receptive field
derived from model.py, and the study's scores."""

import json
import os

import numpy as np
import pytest

from glassy_dynamics_tf import graphs
from glassy_dynamics_tf.analysis import common
from glassy_dynamics_tf.analysis import shell_ablation
from glassy_dynamics_tf.io import record as record_lib

import synthetic_records


def _chain_graph():
  """Particles 1.5 σ apart on a line; the last one far from the others."""
  box = np.array([20.0, 20.0, 20.0])
  positions = np.array([[1.0, 5, 5], [2.5, 5, 5], [4.0, 5, 5], [5.5, 5, 5],
                        [12.0, 5, 5]])
  return graphs.build_graph(positions, box, 2.0), positions, box


def test_hop_distances_on_a_chain():
  graph, positions, _ = _chain_graph()
  hops = shell_ablation.hop_distances(graph, len(positions), [0, 2, 4])
  unreachable = shell_ablation.UNREACHABLE
  np.testing.assert_array_equal(hops, [
      [0, 1, 2, 3, unreachable],
      [2, 1, 0, 1, unreachable],
      [unreachable] * 4 + [0],
  ])


def test_hop_distances_across_the_boundary():
  # A ring of 5 particles 1.8 σ apart closes through the periodic boundary
  # of a 9 σ box: the farthest particle is 2 hops away either way round.
  box = np.array([9.0, 5.0, 5.0])
  positions = np.stack([np.arange(5) * 1.8 + 0.1, np.full(5, 2.5),
                        np.full(5, 2.5)], axis=1)
  graph = graphs.build_graph(positions, box, 2.0)
  hops = shell_ablation.hop_distances(graph, 5, [0])
  np.testing.assert_array_equal(hops, [[0, 1, 2, 2, 1]])


def test_hop_distances_match_brute_force_bfs():
  record = synthetic_records.make_record(3, n_particles=150)
  graph = graphs.build_graph(record.positions, record.box, 2.0)
  hops = shell_ablation.hop_distances(graph, 150, [7])[0]
  # Brute force: frontier expansion on the dense adjacency matrix.
  adjacency = np.zeros([150, 150], bool)
  adjacency[graph.senders, graph.receivers] = True
  expected = np.full(150, -1)
  frontier = np.zeros(150, bool)
  frontier[7] = True
  seen = frontier.copy()
  level = 0
  while frontier.any():
    expected[frontier] = level
    frontier = adjacency[frontier].any(axis=0) & ~seen
    seen |= frontier
    level += 1
  assert (expected >= 0).all()
  np.testing.assert_array_equal(hops, expected)


def test_receptive_field_formula():
  assert shell_ablation.receptive_field_hops(7) == 7
  assert shell_ablation.receptive_field_radius(7, 2.0) == 14.0
  with pytest.raises(ValueError, match="positive integer"):
    shell_ablation.receptive_field_hops(0)


def _particle_at_hop(hops, hop, types=None, exclude=()):
  candidates = [int(i) for i in np.flatnonzero(hops == hop)
                if i not in exclude]
  assert candidates, f"no particle at hop {hop}"
  return candidates


@pytest.mark.parametrize("num_recurrences", [1, 2])
def test_prediction_depends_on_exactly_num_recurrences_hops(
    make_network, num_recurrences):
  """Changing the type of one particle R hops away changes the centre's
  prediction; R + 1 hops away it does not (R = num_recurrences)."""
  network = make_network(num_recurrences=num_recurrences)
  model = common.model_from_network(network, [1.0, 2.0])
  record = synthetic_records.make_record(0, n_particles=300)
  centre = int(np.flatnonzero(record.types == 0)[0])
  graph = graphs.build_graph(record.positions, record.box, 2.0)
  hops = shell_ablation.hop_distances(graph, 300, [centre])[0]
  base = model.predict(record.positions, record.types, record.box)[centre]
  r = num_recurrences
  for hop, should_change in ((r, True), (r + 1, False)):
    for particle in _particle_at_hop(hops, hop)[:3]:
      types = record.types.copy()
      types[particle] = 1 - types[particle]
      out = model.predict(record.positions, types, record.box)[centre]
      change = np.max(np.abs(out - base))
      if should_change:
        assert change > 1e-5, (hop, particle, change)
      else:
        assert change < 1e-6, (hop, particle, change)


def test_small_displacements_beyond_the_receptive_field_change_nothing(
    make_network):
  network = make_network(num_recurrences=2)
  model = common.model_from_network(network, [1.0, 2.0])
  record = synthetic_records.make_record(1, n_particles=300)
  centre = int(np.flatnonzero(record.types == 0)[3])
  graph = graphs.build_graph(record.positions, record.box, 2.0)
  hops = shell_ablation.hop_distances(graph, 300, [centre])[0]
  base = model.predict(record.positions, record.types, record.box)[centre]
  rng = np.random.default_rng(0)
  changes = {2: [], 3: []}
  for hop, found in changes.items():
    for particle in _particle_at_hop(hops, hop):
      moved = record.positions.copy()
      moved[particle] += rng.normal(scale=0.03, size=3)
      new_graph = graphs.build_graph(moved, record.box, 2.0)
      if not (np.array_equal(new_graph.senders, graph.senders) and
              np.array_equal(new_graph.receivers, graph.receivers)):
        continue  # the move changed the connectivity, not only vectors
      out = model.predict(moved, record.types, record.box)[centre]
      found.append(np.max(np.abs(out - base)))
      if len(found) == 3:
        break
  assert len(changes[2]) == len(changes[3]) == 3
  # Random weights respond weakly to a 0.03 σ move two hops away (about
  # 1e-6 σ), but exactly nothing reaches the centre from three hops.
  assert np.mean(changes[2]) > 1e-7, changes
  assert np.max(changes[3]) < 1e-9, changes


def test_ablation_reaches_the_full_prediction_at_num_recurrences(
    make_network):
  network = make_network(num_recurrences=2)
  model = common.model_from_network(network, [1.0, 2.0])
  record = synthetic_records.make_record(2, n_particles=300)
  centres = common.select_centres(record.types, 5,
                                  np.random.default_rng(0))
  ablation = shell_ablation.ablate_configuration(
      model.predict, record.positions, record.types, record.box, centres, 3)
  np.testing.assert_array_equal(ablation.hops, [1, 2, 3])
  deviation = np.abs(ablation.restricted - ablation.full[:, None, :])
  assert deviation[:, 0].max() > 1e-3      # 1 hop: a shell missing
  np.testing.assert_allclose(ablation.restricted[:, 1], ablation.full,
                             atol=2e-6)    # 2 hops = the receptive field
  np.testing.assert_allclose(ablation.restricted[:, 2], ablation.full,
                             atol=2e-6)
  graph = graphs.build_graph(record.positions, record.box, 2.0)
  hops = shell_ablation.hop_distances(graph, 300, centres)
  np.testing.assert_array_equal(
      ablation.n_kept, [[(h <= k).sum() for k in (1, 2, 3)] for h in hops])


def test_scores_golden_values():
  truth = np.array([[1.0, 2.0, 3.0, 4.0]])              # [1 output, 4]
  restricted = np.stack([2 * truth[0] + 1, -truth[0]], axis=1)[..., None]
  ablation = shell_ablation.ShellAblation(
      hops=np.array([1, 2]), centres=np.arange(4), restricted=restricted,
      full=np.array([[1.0], [2.0], [4.0], [3.0]]), n_kept=np.ones([4, 2]))
  scores = shell_ablation.score([ablation], [truth])
  np.testing.assert_allclose(scores.pearson[0, :, 0], [1.0, -1.0])
  # (1, 2, 4, 3) vs (1, 2, 3, 4): deviations from 2.5 give a dot product
  # of 4 and squared norms of 5 each: r = 0.8.
  np.testing.assert_allclose(scores.pearson_full[0, 0], 0.8)
  np.testing.assert_allclose(scores.deviation[:, 0],
                             [np.mean(np.abs(2 * truth[0] + 1 -
                                             [1, 2, 4, 3])),
                              np.mean(np.abs(-truth[0] - [1, 2, 4, 3]))])


def test_run_writes_report_and_figure(make_network, tmp_path):
  network = make_network(num_recurrences=1)
  model = common.model_from_network(network, [0.5, 2.0])
  records = synthetic_records.make_records(2, n_particles=200)
  report = shell_ablation.run(model, ["a", "b"], records, str(tmp_path),
                              n_centres=6, seed=1)
  assert os.path.getsize(tmp_path / "shell_ablation.png") > 0
  with open(tmp_path / "shell_ablation.json") as f:
    written = json.load(f)
  assert written["hops"] == [1, 2]          # num_recurrences + 1
  assert written["receptive_field_hops"] == 1
  assert written["n_centres"] == [6, 6]
  # Past the receptive field the scores are those of the full model.
  np.testing.assert_allclose(written["pearson"]["mean"][0],
                             written["pearson_full"]["mean"], atol=1e-5)
  assert "Extended Data Fig. 8" in written["reproduces"]
  assert "full" in shell_ablation.summary(report)


def test_run_without_propensity_names_the_problem(make_network, tmp_path):
  model = common.model_from_network(make_network(num_recurrences=1), [1.0])
  full = synthetic_records.make_record(0, n_particles=150)
  record = record_lib.ConfigurationRecord.create(
      positions=full.positions, types=full.types, box=full.box,
      propensity=np.zeros([0, 150]), times=[], temperature=1.0)
  with pytest.raises(common.AnalysisError, match="'x' has 0 propensity"):
    shell_ablation.run(model, ["x"], [record], str(tmp_path))
