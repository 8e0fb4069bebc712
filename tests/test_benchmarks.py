"""The benchmark scripts' quick modes run in CI so they never rot (timings are not asserted here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def run_quick(script: str, *extra: str) -> subprocess.CompletedProcess:
    results = BENCHMARKS / "RESULTS.md"
    before = results.read_text() if results.exists() else None
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *extra], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "|---|" in result.stdout  # printed its markdown table
    assert (results.read_text() if results.exists() else None) == before  # quick mode never writes RESULTS.md
    return result


def json_line(stdout: str) -> dict:
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("JSON "))[len("JSON ") :])


@pytest.mark.parametrize(
    "script",
    [
        "generation.py",
        "filter_definitions.py",
        "assistant_weight.py",
        "reference_cache.py",
        "uld_convergence.py",
        "demo_sweep.py",
        "uld_7b_shape.py",
        "truncated_load.py",
        "tofu_augmentations.py",
    ],
)
def test_benchmark_quick_mode_runs(script, smollm2_path):
    run_quick(script)


def test_train_cost_quick_mode(smollm2_path):
    result = run_quick("train_cost.py", "--profile")
    variants = json_line(result.stdout)
    assert set(variants) == {
        "ULD",
        "ULD, gradient checkpointing",
        "GA",
        "NPO+GD, precomputed ref.",
        "NPO+GD, recomputed ref.",
        "NPO+KL, precomputed ref.",
        "NPO+KL, recomputed ref.",
    }
    for values in variants.values():
        assert len(values["step_s"]) == 2  # --quick: 2 optimiser steps, the first untimed
        assert values["peak_rss"] >= values["rss_before_model"] > 0
    for column in ("s / step", "FLOP limit, c=2 (c=3)", "peak RSS MiB"):
        assert column in result.stdout
    assert "1.15× the base weights" in result.stdout
    # --profile: operator tables of ULD and NPO+GD, and ULD's saved-for-backward memory by kind
    assert result.stdout.count("Allocations by operator") == 2
    assert "vocabulary-sized (LM head, losses):" in result.stdout and "decoder layers:" in result.stdout


def test_tofu_mini_quick_mode(smollm2_path):
    result = run_quick("tofu_mini.py")
    summary = json_line(result.stdout)
    models = [row["model"] for row in summary["table"]]
    assert models == ["retain model", "target", "ULD", "GA", "GD", "NPO+GD", "SimNPO", "IdkDPO"]
    for row in summary["table"]:
        assert set(row) == {
            "model",
            "forget quality",
            "model utility",
            "forget prob.",
            "forget ROUGE",
            "retain ROUGE",
            "train s",
        }
        assert 0 <= float(row["forget quality"]) <= 1
    assert summary["table"][0]["forget quality"] == "1"  # the retain model against itself
    assert summary["report"]["forget_quality_vs_utility"].endswith(".png")
    assert summary["total_seconds"] > 0


def test_tofu_mini_names_a_missing_tofu_copy(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "tofu_mini.py"), "--tofu", str(tmp_path / "no-tofu")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert f"--tofu='{tmp_path / 'no-tofu'}'" in result.stderr and "does not exist" in result.stderr
    assert "Pass --tofu locuslab/TOFU (the Hub) or a directory holding forget10_perturbed" in result.stderr
    assert "Traceback" not in result.stderr


def test_gpu_check_quick_mode_runs_every_check(smollm2_path):
    """The CUDA checks' script runs end to end on CPU (tiny shapes), so it is ready when a GPU machine is lent."""
    result = run_quick("gpu_check.py")
    table = [line for line in result.stdout.splitlines() if line.startswith("| ") and "FAILED" not in line]
    checks = [line.split(" | ")[0].removeprefix("| ") for line in table[1:]]
    assert [check.split(",")[0] for check in checks] == ["ULD", "NPO+GD", "ULD", "ULD", "generation", "generation"]
    assert "5 of 22 layers loaded" in table[4]
    assert "FAILED" not in result.stdout


def test_benchmark_options_refuse_bad_values():
    """`gpu_check.py --only` names its valid checks and `assistant_weight.py --seed` wants an integer."""
    for script, option, value, expected in (
        (
            "gpu_check.py",
            "--only",
            "7B-shape",
            "argument --only: invalid choice: '7B-shape' (choose from 'uld', 'npo'",
        ),
        ("assistant_weight.py", "--seed", "one", "argument --seed: invalid int value: 'one'"),
    ):
        result = subprocess.run(
            [sys.executable, str(BENCHMARKS / script), option, value], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 2
        assert expected in result.stderr
        assert "Traceback" not in result.stderr
