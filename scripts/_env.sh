# Sourced by scripts/demo and scripts/test: make sure .venv exists and holds this project's
# dependencies (re-installs when pyproject.toml changes), then put it first on PATH.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PY" -m venv "$ROOT/.venv"
fi
stamp="$ROOT/.venv/.installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing agent-pipelines and its dependencies into .venv (first run takes a minute)..." >&2
  "$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  "$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[test]" >&2
  echo "$want" > "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
cd "$ROOT"
