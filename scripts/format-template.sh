#!/usr/bin/env bash
# Render the default variant, let ruff fix and format it, and copy the plain (non-.jinja) Python
# files back into template/. Templated files are reported so they can be fixed by hand.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
copier copy --defaults --quiet "$repo" "$out/p" >/dev/null 2>&1
cd "$out/p"
pkg=$(sed -n 's/^package_name: //p' .copier-answers.yml)
dirs=$(ls -d src tests 2>/dev/null || true)
uvx ruff check --fix-only --quiet $dirs 2>/dev/null || true
uvx ruff format --quiet $dirs
cd "$repo/template"
find . -name '*.py' -not -path './.venv/*' | while read -r f; do
  rendered="$out/p/${f//\{\{package_name\}\}/$pkg}"
  [ -f "$rendered" ] && ! cmp -s "$f" "$rendered" && cp "$rendered" "$f" && echo "formatted $f"
done
find . -name '*.py.jinja' | while read -r f; do
  rendered="$out/p/${f//\{\{package_name\}\}/$pkg}"; rendered="${rendered%.jinja}"
  (cd "$out/p" && uvx ruff format --quiet --check "$rendered" >/dev/null 2>&1) || echo "needs hand formatting: $f"
done
