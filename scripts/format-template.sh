#!/usr/bin/env bash
# Render the default variant, let ruff fix and format it, and copy the plain (non-.jinja) Python
# files back into template/. Templated files are reported so they can be fixed by hand.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
copier copy --defaults --quiet --vcs-ref HEAD "$repo" "$out/p" >/dev/null 2>&1
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
# A .py.jinja file whose only Jinja is `{{ package_name }}` is written back with the name restored.
find . -name '*.py.jinja' | while read -r f; do
  rendered="$out/p/${f//\{\{package_name\}\}/$pkg}"; rendered="${rendered%.jinja}"
  if grep -q '{%' "$f" || grep -o '{{[^}]*}}' "$f" | grep -qv '{{ package_name }}'; then
    echo "templated beyond the package name, check by hand: $f"
  elif ! cmp -s "$f" <(sed "s/\b$pkg\b/{{ package_name }}/g" "$rendered"); then
    sed "s/\b$pkg\b/{{ package_name }}/g" "$rendered" > "$f" && echo "formatted $f"
  fi
done
exit 0
