#!/usr/bin/env bash
# Run the oracle tests (nwcorrupt vs neural-tangents, tests/oracle) in the pinned
# reference environment .venv-ref, building it first when it is missing or
# incomplete (scripts/ref_env.sh, about a minute with a fast link to PyPI).
# Extra arguments go to pytest. The randomly drawn cases use a fresh seed each run,
# shown in the report header; replay a run with ORACLE_SEED=<seed>.
# pytest's "no tests collected" (exit 5) counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

bash scripts/ref_env.sh || { echo "[oracle] building .venv-ref failed" >&2; exit 2; }

# The checkout itself first on the path, whatever the editable install points to.
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" .venv-ref/bin/python -m pytest tests/oracle "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "[oracle] pytest collected no tests" >&2
  exit 1
fi
exit $rc
