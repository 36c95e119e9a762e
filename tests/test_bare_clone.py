"""A clone of the repository alone passes its tests and runs the README's
examples: nothing refers to a directory beside the repository, every
fixture is a tracked file, and (slow) the fixture tests and the pretrained
model's README example pass in a copy of the tracked files with no siblings.

`bash .ci/run` runs the whole suite in such a copy; the slow test here is
the quick local version of that check.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

from glassy_dynamics_tf import pretrained

import fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THIS = os.path.relpath(os.path.abspath(__file__), ROOT)
# A sibling directory of the repository, however spelled: "../shared/...",
# an absolute /work/shared, or a path joined from "..", "shared" pieces.
_SIBLING = "shared"
OUTSIDE = re.compile(
    r"\.\./" + _SIBLING + r"\b|/work/" + _SIBLING + r"\b|"
    r"[\"']" + _SIBLING + r"[\"']\s*(?:,|/)|/\s*[\"']" + _SIBLING + r"[\"']")
_SKIP_DIRS = {".git", ".venv", "__pycache__", "build", "dist",
              "demo_output", ".pytest_cache"}
_TEXT_SUFFIXES = (".py", ".md", ".sh", ".txt", ".ini", ".cfg", ".toml",
                  ".json", ".bib", ".tsv", "")


def _in_git_checkout() -> bool:
  return shutil.which("git") is not None and os.path.isdir(
      os.path.join(ROOT, ".git"))


def _repository_files():
  """Tracked files (in a git checkout), else every file of the tree (a
  copy made by .ci/copy_tree.sh holds only tracked files)."""
  if _in_git_checkout():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                         capture_output=True).stdout.decode()
    return [f for f in out.split("\0")
            if f and os.path.exists(os.path.join(ROOT, f))]
  files = []
  for directory, subdirs, names in os.walk(ROOT):
    subdirs[:] = [d for d in subdirs if d not in _SKIP_DIRS and
                  not d.endswith(".egg-info")]
    files += [os.path.relpath(os.path.join(directory, n), ROOT)
              for n in names]
  return files


def test_no_file_refers_to_a_directory_beside_the_repository():
  offenders = []
  for name in _repository_files():
    if name == THIS or not name.endswith(_TEXT_SUFFIXES):
      continue
    try:
      with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        text = f.read()
    except (UnicodeDecodeError, IsADirectoryError):
      continue
    for number, line in enumerate(text.splitlines(), 1):
      if OUTSIDE.search(line):
        offenders.append(f"{name}:{number}: {line.strip()}")
  assert not offenders, (
      "these lines need a directory beside the repository, which a clone "
      "does not have (vendor the file, e.g. under tests/fixtures/):\n" +
      "\n".join(offenders))


def test_every_fixture_and_shipped_model_file_is_in_the_repository():
  shipped = [os.path.join(e.directory, n)
             for e in pretrained.entries().values() if e.available
             for n in (pretrained.CARD_JSON, pretrained.CARD_MD)]
  wanted = [os.path.relpath(p, ROOT) for p in fixtures.ALL + tuple(shipped)]
  files = set(_repository_files())
  missing = [w for w in wanted if w not in files]
  assert not missing, (f"not tracked by git (a clone would lack them): "
                       f"{missing}; git add them")
  assert os.path.exists(os.path.join(ROOT, "NOTICE"))


@pytest.mark.slow
def test_fixture_tests_and_readme_example_pass_in_a_bare_copy(tmp_path):
  if not _in_git_checkout():
    pytest.skip("needs a git checkout to know the tracked files")
  copy = tmp_path / "alone" / "repo"
  subprocess.run(["bash", os.path.join(ROOT, ".ci", "copy_tree.sh"),
                  str(copy)], check=True)
  assert os.listdir(copy.parent) == ["repo"]  # no sibling directories
  # The same interpreter (this venv); the copy's own package comes first
  # on sys.path, as `python -m pytest` and `python SCRIPT` put cwd there.
  run = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-x",
       "tests/test_bare_clone.py", "tests/test_deepmind_checkpoint.py",
       "tests/test_pretrained.py", "tests/test_io.py"],
      cwd=copy, capture_output=True, text=True, timeout=1500, check=False)
  assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
  # The README's "Moving from the 2020 release" example.
  run = subprocess.run(
      [sys.executable, "predict_main.py", "--model=t044_s09",
       "--input=tests/fixtures/deepmind/test_small.pickle",
       f"--output={tmp_path / 't044.npz'}",
       f"--export_saved_model={tmp_path / 't044_saved_model'}"],
      cwd=copy, capture_output=True, text=True, timeout=600, check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "pretrained model t044_s09" in run.stdout
  assert str(copy) in run.stdout  # the copy's checkpoint, not this tree's
  assert os.path.exists(tmp_path / "t044_saved_model" / "saved_model.pb")
