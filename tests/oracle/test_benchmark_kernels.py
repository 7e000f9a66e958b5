"""``benchmarks/kernels.py`` (nwcorrupt against neural-tangents and the Gram product) runs end to end.

It needs neural-tangents, so it lives in the oracle suite (the reference environment); at smoke-test
size its ratios are noise, so only the report's structure is checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_kernels_benchmark_quick_prints_both_ratios_for_every_configuration():
    out = subprocess.run([sys.executable, "benchmarks/kernels.py", "--quick", "--no-memory"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    for act in ("relu", "erf"):
        for dtype in ("float64", "float32"):
            assert f"{act} {dtype} N=M=400" in text
    assert text.count("=> neural-tangents / nwcorrupt time =") == 4
    assert text.count("nwcorrupt / matmul =") == 4
