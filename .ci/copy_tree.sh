#!/usr/bin/env bash
# Copies the repository's tracked files, as they are in the working tree
# (uncommitted edits included, untracked and ignored files left out), to
# DEST: what a fresh clone of the current work would hold.
#   bash .ci/copy_tree.sh DEST
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:?usage: copy_tree.sh DEST}"
mkdir -p "$DEST"
# Tracked files deleted in the working tree are skipped (a clone of the
# next commit would not have them).
git -C "$ROOT" ls-files -z | while IFS= read -r -d '' f; do
  if [ -e "$ROOT/$f" ] || [ -L "$ROOT/$f" ]; then printf '%s\0' "$f"; fi
done | tar -C "$ROOT" --null -T - -cf - | tar -C "$DEST" -xf -
