#!/usr/bin/env bash
# Package everything a GPU pod needs into one tarball with a checksum manifest.
#
#   bash scripts/package_runpod.sh --data data/continuous_2M --out runpod_package.tar.gz
#
# Contents: every file under src/, scripts/ and tests/ that git tracks or would track (so a module you
# forgot to `git add` still travels), requirements.txt, README.md, CLAUDE.md, Makefile, docs/,
# the data folders named with --data (repeatable), GIT_COMMIT, and MANIFEST.sha256.
set -euo pipefail
here=$(pwd)
cd "$(dirname "$0")/.."
abspath() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$here" "$1" ;; esac; }

out="$here/runpod_package.tar.gz"
data=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data) [ $# -ge 2 ] || { echo "error: --data needs a folder" >&2; exit 2; }; data+=("${2%/}"); shift 2 ;;
    --out) [ $# -ge 2 ] || { echo "error: --out needs a path" >&2; exit 2; }; out=$(abspath "$2"); shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "error: unknown argument '$1' (use --data DIR, --out PATH)" >&2; exit 2 ;;
  esac
done
root=$(pwd)
for i in "${!data[@]}"; do data[$i]=$(abspath "${data[$i]}"); done
for d in "${data[@]+"${data[@]}"}"; do
  [ -d "$d" ] || { echo "error: data folder '$d' does not exist; build it first (e.g. scripts/prepare_continuous_2M.py)" >&2; exit 2; }
  [ -n "$(ls -A "$d")" ] || { echo "error: data folder '$d' is empty" >&2; exit 2; }
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/pkg"
mkdir -p "$pkg"
{
  git ls-files --cached --others --exclude-standard -- src scripts docs tests
  printf '%s\n' requirements.txt README.md CLAUDE.md Makefile
} | grep -v -E '(__pycache__|\.pyc$)' | sort -u | while read -r f; do
  if [ -f "$f" ]; then mkdir -p "$pkg/$(dirname "$f")"; cp -p "$f" "$pkg/$f"; fi
done
for d in "${data[@]+"${data[@]}"}"; do
  # a folder inside the repo keeps its path; one outside goes to data/<its name>
  case "$d" in "$root"/*) dest="${d#"$root"/}" ;; *) dest="data/$(basename "$d")" ;; esac
  mkdir -p "$pkg/$(dirname "$dest")"
  cp -rp "$d" "$pkg/$dest"
done
git rev-parse HEAD > "$pkg/GIT_COMMIT" 2>/dev/null || echo unknown > "$pkg/GIT_COMMIT"
(cd "$pkg" && find . -type f ! -name MANIFEST.sha256 -printf '%P\0' | sort -z | xargs -0 sha256sum > MANIFEST.sha256)

tmp_out="$out.tmp$$"
tar -czf "$tmp_out" -C "$pkg" .
mv "$tmp_out" "$out"
n=$(wc -l < "$pkg/MANIFEST.sha256")
echo "wrote $out ($(du -h "$out" | cut -f1), $n files; data: ${data[*]:-none})"
echo "send it:  runpodctl send $out      on the pod:  tar xzf $(basename "$out") && bash scripts/runpod_setup.sh"
