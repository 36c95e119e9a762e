"""The slice plots (glassy_dynamics_tf.plots) on hand-made slabs."""

import os

import matplotlib
matplotlib.use("Agg")
from matplotlib import colors as mcolors  # pylint: disable=g-import-not-at-top
import matplotlib.image as mimage  # pylint: disable=g-import-not-at-top
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import pytest

from glassy_dynamics_tf import plots

BOX = np.array([10.0, 8.0, 6.0])


def test_colour_limits_come_from_type_a_only():
  # 100 A particles valued 0..99 and 25 B particles at 1000: the range is the
  # A values' 1st and 99th percentiles, 0.99 and 98.01 (linear
  # interpolation between ranks), whatever the B values.
  values = np.concatenate([np.arange(100.0), np.full(25, 1000.0)])
  types = np.concatenate([np.zeros(100, int), np.ones(25, int)])
  assert plots.colour_limits(values, types) == pytest.approx((0.99, 98.01))
  values[-1] = np.nan  # a B particle without a score changes nothing
  assert plots.colour_limits(values, types) == pytest.approx((0.99, 98.01))
  # Degenerate panels still get an increasing range.
  assert plots.colour_limits(np.full(4, 2.0), [0, 0, 1, 1]) == pytest.approx(
      (1.9, 2.1))
  assert plots.colour_limits(np.zeros(3), [0, 0, 0]) == (-0.5, 0.5)
  # No A particle: every particle sets the range.
  assert plots.colour_limits([1.0, 3.0], [1, 1], (0, 100)) == (1.0, 3.0)


def _slab_system():
  """Ten A and three B particles; the slab is |z − 0.1| < 0.5 (periodic).

  A particles 0-7 sit at z = 0.3 (in), 8 at z = 5.8 (0.3 below 0.1 through
  the z boundary: in), 9 at z = 3.0 (out). B particles 10, 11 in, 12 out.
  """
  x = np.arange(13.0) * 0.7 + 0.3
  z = np.array([0.3] * 8 + [5.8, 3.0] + [0.2, 0.0, 2.0])
  positions = np.column_stack([x, np.full(13, 4.0), z])
  types = np.array([0] * 10 + [1] * 3)
  return positions, types


@pytest.mark.parametrize("most_mobile,ringed", [(8, [8]), (9, [])])
def test_draw_slice_colours_a_greys_b_and_rings_the_top_a(most_mobile,
                                                          ringed):
  positions, types = _slab_system()
  values = np.arange(13.0)
  values[most_mobile] = 50.0          # the top 10 % of the ten A particles
  values[10:] = 500.0                 # B: faster than every A
  fig, ax = plt.subplots()
  artists = plots.draw_slice(ax, positions, types, BOX, values, z_centre=0.1,
                             thickness=1.0, top_fraction=0.1)
  in_slab = [True] * 9 + [False] + [True, True, False]
  np.testing.assert_array_equal(artists.in_slab, in_slab)
  # A: the nine in the slab, coloured by their values on the A-only range.
  a_in = np.flatnonzero(np.array(in_slab) & (types == 0))
  np.testing.assert_array_equal(artists.a.get_array(), values[a_in])
  np.testing.assert_allclose(artists.a.get_offsets(), positions[a_in, :2])
  vmin, vmax = plots.colour_limits(values, types)
  assert (artists.a.norm.vmin, artists.a.norm.vmax) == (vmin, vmax)
  assert vmax < 50.0
  # B: the two in the slab, unfilled grey outlines, no colour mapping.
  np.testing.assert_allclose(artists.b.get_offsets(), positions[[10, 11], :2])
  assert artists.b.get_array() is None
  assert np.all(artists.b.get_facecolor()[:, 3] == 0.0)
  np.testing.assert_allclose(artists.b.get_edgecolor()[0],
                             mcolors.to_rgba("0.6"))
  # Rings: the top A of the whole configuration, drawn only if in the slab;
  # a B particle is never ringed, however fast.
  np.testing.assert_array_equal(np.flatnonzero(artists.is_mobile),
                                [most_mobile])
  np.testing.assert_allclose(artists.mobile.get_offsets().reshape(-1, 2),
                             positions[ringed, :2].reshape(-1, 2))
  plt.close(fig)


def test_propensity_slices_writes_one_panel_per_scored_quantity(tmp_path):
  positions, types = _slab_system()
  propensity = np.stack([np.arange(13.0), np.arange(13.0)[::-1]])
  predictions = {"model": np.column_stack([np.arange(13.0)] * 2),
                 "first_only": np.column_stack([np.ones(13),
                                                np.full(13, np.nan)])}
  sizes = {}
  for j in (0, 1):
    path = plots.propensity_slices(positions, types, BOX, propensity,
                                   predictions, str(tmp_path / f"s{j}.png"),
                                   timescale=j, time=0.5, z_centre=0.1,
                                   top_fraction=0.1)
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    sizes[j] = mimage.imread(path).shape
  # Timescale 1 has no "first_only" panel: 2 panels in a row instead of 3.
  assert sizes[1][1] < 0.8 * sizes[0][1]


def _report(ceiling_known):
  """A two-timescale report with one model and one baseline."""
  summary = lambda m: {"mean": m, "std": [0.02, 0.02], "sem": [0.01, 0.01],
                       "min": m, "max": m, "median": m, "count": [4, 4]}
  method = lambda kind, m: {
      "kind": kind, "timescale_indices": [0, 1],
      "metrics": {"pearson": summary(m), "roc_auc": summary([0.8, 0.7]),
                  "balanced_accuracy": summary([0.7, 0.6])}}
  report = {
      "times": [0.5, 2.0], "isf_levels": [0.7, 0.3679], "tau_alpha": 2.0,
      "n_configurations": 4, "top_fraction": 0.1,
      "headline_metrics": ["pearson", "roc_auc", "balanced_accuracy"],
      "chance_levels": {"pearson": 0.0, "roc_auc": 0.5,
                        "balanced_accuracy": 0.5},
      "methods": {"gnn": method("model", [0.6, 0.5]),
                  "softness": method("baseline", [0.5, 0.4])},
      "noise_ceiling": {"known": False,
                        "reason": "records lack propensity_halves"},
      "comparisons": {"gnn": {"softness": {
          "timescale_indices": [0, 1],
          **{m: {"mean": [0.1, 0.1], "sem": [0.02, None],
                 "n_sem": [5.0, None], "count": [4, 4]}
             for m in ("pearson", "roc_auc", "balanced_accuracy")}}}},
  }
  if ceiling_known:
    report["noise_ceiling"] = {
        "known": True, "reason": None,
        "ceiling": {"mean": [0.9, 0.8], "sem": [0.01, 0.01]}}
  return report


@pytest.mark.parametrize("known", [True, False])
def test_noise_ceiling_is_drawn_when_known_else_noted(known):
  fig, ax = plt.subplots()
  assert plots.draw_noise_ceiling(ax, _report(known)) is known
  (line,) = ax.get_lines()
  if known:
    assert line.get_linestyle() == "--"
    np.testing.assert_allclose(line.get_xydata(), [[0.5, 0.9], [2.0, 0.8]])
    assert line.get_label().startswith("noise ceiling sqrt(")
  else:
    # No line: a legend entry carries the reason.
    assert line.get_xydata().size == 0
    assert line.get_label() == (
        "noise ceiling unknown (records lack propensity_halves)")
  plt.close(fig)


@pytest.mark.parametrize("known", [True, False])
def test_headline_and_difference_figures_are_written(tmp_path, known):
  report = _report(known)
  for function in (plots.pearson_vs_time, plots.headline_vs_time,
                   plots.paired_differences):
    path = function(report, str(tmp_path / f"{function.__name__}.png"))
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  # Three panels side by side: about three times as wide as one.
  wide = mimage.imread(str(tmp_path / "headline_vs_time.png")).shape[1]
  one = mimage.imread(str(tmp_path / "pearson_vs_time.png")).shape[1]
  assert wide > 1.8 * one


def test_learning_curves_writes_a_png(tmp_path):
  history = {"loss": [3.0, 1.0, 0.9], "val_loss": [1.0, 0.95, 0.9],
             "val_pearson": [0.1, 0.3, 0.35], "val_pearson_0": [0.2, 0.4, 0.4],
             "val_pearson_1": [0.0, 0.2, 0.3],
             "learning_rate": [1e-3, 5e-4, 1e-5]}
  path = plots.learning_curves(history, 500, str(tmp_path / "c.png"),
                               times=(0.1, 8.0), title="run")
  assert os.path.getsize(path) > 1000
  # A history without the optional keys still plots.
  plots.learning_curves({"loss": [1.0]}, 10, str(tmp_path / "d.png"))
