# Sourced by the scripts: a virtual environment in .venv with the template's tools, installed
# from tests/requirements.txt (every package pinned with its hashes), made once and refreshed
# when that file changes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.requirements.sha256
wanted=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "setting up .venv with the template's tools (tests/requirements.txt)..." >&2
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
    -r tests/requirements.txt
  echo "$wanted" > "$stamp"
fi
