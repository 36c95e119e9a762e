"""Quiet start of the mains (glassy_dynamics_tf/console.py).

On a CPU-only machine, importing TensorFlow prints C++ banners (absl
pre-init warning, oneDNN notice, cudart stub, CPU features, failed cuInit)
that no log level removes. Every *_main.py imports `console` first, which
filters exactly those lines from the stderr of TensorFlow's import. Checked
here: the filter on its own (what it drops, what it keeps), that each main
imports console before anything that can load TensorFlow, and a real
prediction in a clean environment, whose output has none of the banners.
"""

import ast
import os
import subprocess
import sys

import pytest

from glassy_dynamics_tf import console

import fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAINS = ("simulate_main.py", "train_main.py", "evaluate_main.py",
         "predict_main.py", "analyze_main.py")
# What a CPU-only start of TensorFlow 2.21 prints (measured).
BANNER_WORDS = ("cuInit", "absl::InitializeLog", "oneDNN", "cudart",
                "cpu_feature_guard")
BANNERS = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796323388.304373    5415 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1796323388.304669    5415 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1796323388.364276    5415 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
E0000 00:00:1796323392.144996    5415 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
"""
KEPT = ("E0000 00:00:1796323392.000001    5415 op_kernel.cc:1830] a real "
        "error\n", "Traceback (most recent call last):\n")


def test_filter_drops_the_banners_and_keeps_the_rest():
  text = KEPT[0] + BANNERS + KEPT[1]
  assert console.filter_native_banners(text, False) == "".join(KEPT)
  # With an NVIDIA driver a failed cuInit is a broken set-up: it is kept.
  kept = console.filter_native_banners(text, True)
  assert "failed call to cuInit" in kept and "oneDNN" not in kept


def test_filtered_block_replays_native_stderr_without_banners(tmp_path):
  # A child process, so that its file descriptor 2 is a file we can read.
  script = (
      "import os\n"
      "from glassy_dynamics_tf import console\n"
      "with console.native_banners_filtered():\n"
      f"  os.write(2, {BANNERS.encode()!r})\n"
      f"  os.write(2, {KEPT[0].encode()!r})\n")
  run = subprocess.run([sys.executable, "-c", script], cwd=ROOT,
                       capture_output=True, text=True, timeout=120,
                       check=False)
  assert run.returncode == 0, run.stderr
  # On this machine: KEPT[0] alone, or with an NVIDIA driver also cuInit.
  assert run.stderr == console.filter_native_banners(
      BANNERS + KEPT[0], os.path.exists(console.NVIDIA_DRIVER_FILE))
  assert run.stderr.endswith(KEPT[0]) and "oneDNN" not in run.stderr


@pytest.mark.parametrize("main", MAINS)
def test_each_main_imports_console_before_tensorflow_can_load(main):
  with open(os.path.join(ROOT, main), encoding="utf-8") as f:
    tree = ast.parse(f.read())
  project_imports = [
      node for node in tree.body
      if isinstance(node, ast.ImportFrom) and node.module and
      node.module.startswith("glassy_dynamics_tf")]
  assert project_imports, f"{main} imports nothing from glassy_dynamics_tf"
  first = project_imports[0]
  assert first.module == "glassy_dynamics_tf" and [
      a.name for a in first.names] == ["console"], (
          f"{main}: the first project import must be `from "
          f"glassy_dynamics_tf import console` (it must run before "
          f"TensorFlow loads)")
  # Before it: only the standard library, absl and ml_collections, none of
  # which loads TensorFlow.
  for node in tree.body[:tree.body.index(first)]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import)
               else [node.module or ""])
      for name in names:
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or top in (
            "absl", "ml_collections"), f"{main}: {name} imported before console"


def test_a_real_prediction_starts_quietly(tmp_path):
  env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
         "HOME": os.environ.get("HOME", str(tmp_path))}  # No TF_CPP_* set.
  run = subprocess.run(
      [sys.executable, "predict_main.py", "--model=t044_s09",
       f"--input={fixtures.DEEPMIND_PICKLE}",
       f"--output={tmp_path / 'out.npz'}", "--output_xyz=none"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
      check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  assert os.path.exists(tmp_path / "out.npz")
  output = run.stdout + run.stderr
  noisy = [w for w in BANNER_WORDS if w in output]
  assert not noisy, f"banners {noisy} in the output:\n{output[-3000:]}"
