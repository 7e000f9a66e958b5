#!/usr/bin/env bash
# Run the whole nwcorrupt test suite in .venv (create it first with scripts/setup.sh).
# Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "no .venv: run 'bash scripts/setup.sh' first" >&2
  exit 2
fi
.venv/bin/python -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit $rc
