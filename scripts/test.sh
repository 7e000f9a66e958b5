#!/usr/bin/env bash
# Run the whole nwcorrupt test suite:
#   1. the main suite in .venv (create it first with scripts/setup.sh) in NWCORRUPT_TEST_WORKERS (default 2)
#      pytest-xdist workers, one test file per worker at a time (XLA compiles on one thread, so two
#      workers keep both cores busy); extra arguments go to pytest (-n 0 runs in one process);
#   2. the oracle suite (nwcorrupt vs neural-tangents) in the pinned reference environment .venv-ref,
#      built on first use by scripts/ref_env.sh (set NWCORRUPT_SKIP_ORACLE=1 to leave it out).
# pytest's "no tests collected" (exit 5) counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "no .venv: run 'bash scripts/setup.sh' first" >&2
  exit 2
fi
.venv/bin/python -m pytest -n "${NWCORRUPT_TEST_WORKERS:-2}" --dist loadfile "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests" >&2
  rc=1
fi
if [ "${NWCORRUPT_SKIP_ORACLE:-0}" != 1 ]; then
  echo "== oracle suite (reference environment with neural-tangents)"
  bash scripts/test_oracle.sh -q
  orc=$?
  [ $rc -eq 0 ] && rc=$orc
fi
exit $rc
