"""The benchmark scripts' quick modes run in CI so they never rot (timings are not asserted here)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


@pytest.mark.parametrize("script", ["generation.py", "filter_definitions.py", "reference_cache.py"])
def test_benchmark_quick_mode_runs(script, smollm2_path):
    results = BENCHMARKS / "RESULTS.md"
    before = results.read_text() if results.exists() else None
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "|---|" in result.stdout  # printed its markdown table
    assert (results.read_text() if results.exists() else None) == before  # quick mode never writes RESULTS.md
