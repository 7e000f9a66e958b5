#!/usr/bin/env bash
# Build the pinned reference environment .venv-ref, in which neural-tangents (the
# field's reference implementation of NNGP/NTK kernels) and nwcorrupt run side by
# side in one process. It is used by the oracle tests (scripts/test_oracle.sh) and
# by benchmarks/kernels.py.
#
# neural-tangents 0.6.5 (its last release) imports TensorFlow and needs jax <= 0.5.3,
# so this environment pins:
#   jax/jaxlib 0.5.3, numpy < 2, tensorflow-cpu 2.17.1, frozendict, absl-py,
#   then, without dependencies (they would pull the full `tensorflow` and a newer jax):
#   tf2jax 0.3.6, dm-tree, neural-tangents 0.6.5,
#   plus what nwcorrupt's kernel/predict code and the tests need (scipy, optax, tqdm,
#   pytest, hypothesis) at versions that work with numpy 1.26,
#   and finally nwcorrupt itself (editable, no dependencies).
#
# Safe to rerun: when .venv-ref is complete for this recipe it only refreshes the
# editable nwcorrupt install (a no-op in practice). Set REF_ENV_FORCE=1 to rebuild,
# PYTHON to choose the interpreter (Python 3.11 is what the recipe was tested with).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-ref
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
PIP_FLAGS=(-q --disable-pip-version-check)

# The recipe; its text is stored in the completion stamp, so editing it triggers a rebuild.
STEP1=("jax==0.5.3" "jaxlib==0.5.3" "numpy>=1.26,<2" "tensorflow-cpu==2.17.1" "frozendict" "absl-py")
STEP2=("tf2jax==0.3.6" "dm-tree==0.1.8" "neural-tangents==0.6.5")
STEP3=("scipy>=1.11,<1.15" "optax>=0.2,<0.2.5" "tqdm" "pytest>=8" "hypothesis>=6")
RECIPE="${STEP1[*]} | ${STEP2[*]} | ${STEP3[*]}"
STAMP="$VENV/.nwcorrupt-ref-recipe"

if [ "${REF_ENV_FORCE:-0}" = 1 ]; then
  echo "[ref-env] REF_ENV_FORCE=1: removing $VENV"
  rm -rf "$VENV"
fi

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$RECIPE" ]; then
  echo "[ref-env] $VENV is complete; skipping the build"
else
  start=$(date +%s)
  rm -rf "$VENV"
  echo "[ref-env] creating $VENV with $("$PY" --version 2>&1)"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" --upgrade pip
  echo "[ref-env] step 1/3: jax 0.5.3, numpy<2, tensorflow-cpu 2.17.1 (large download)"
  # numpy<2 is repeated as a constraint in later steps so nothing upgrades it.
  "$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" "${STEP1[@]}"
  echo "[ref-env] step 2/3: tf2jax, dm-tree, neural-tangents (no dependencies)"
  "$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" --no-deps "${STEP2[@]}"
  echo "[ref-env] step 3/3: nwcorrupt's own needs and the test tools"
  "$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" "${STEP3[@]}" "numpy>=1.26,<2" "jax==0.5.3" "jaxlib==0.5.3"
  printf '%s' "$RECIPE" > "$STAMP"
  echo "[ref-env] built in $(( $(date +%s) - start )) s"
fi

# nwcorrupt itself, editable and without dependencies (its declared dependencies
# would upgrade jax and numpy); skipped when .venv-ref already imports this checkout.
here=$(pwd -P)
installed=$(cd / && "$here/$VENV/bin/python" -c "import os, nwcorrupt; print(os.path.dirname(os.path.dirname(os.path.realpath(nwcorrupt.__file__))))" 2>/dev/null || true)
if [ "$installed" != "$here" ]; then
  echo "[ref-env] installing nwcorrupt (editable, --no-deps) from $here"
  log=$(mktemp)
  if ! "$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" --no-deps -e . >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
fi

# Smoke check: both libraries import, silently, with the pinned versions.
TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/python" - <<'EOF'
import jax, numpy, neural_tangents, nwcorrupt
assert jax.__version__ == "0.5.3", jax.__version__
assert numpy.__version__.startswith("1."), numpy.__version__
print(f"[ref-env] ok: jax {jax.__version__}, numpy {numpy.__version__}, "
      f"neural-tangents {neural_tangents.__version__}, nwcorrupt {nwcorrupt.__version__}")
EOF
