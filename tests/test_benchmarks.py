"""The benchmark scripts' quick modes run in CI so they never rot (timings are not asserted here)."""

import importlib.util
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
        "tofu_scoring.py",
    ],
)
def test_benchmark_quick_mode_runs(script, smollm2_path):
    result = run_quick(script)
    if script == "assistant_weight.py":  # each target's table marks the row of the library's subtraction
        assert result.stdout.count(" (default) |") == 2, result.stdout


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


def test_tofu_mini_quick_mode(smollm2_path, tmp_path):
    result = run_quick("tofu_mini.py", "--runs-dir", str(tmp_path / "runs"))
    summary = json_line(result.stdout)
    assert summary["reused"] == []
    baselines = ["GA", "GD", "KL", "NPO+GD", "SimNPO", "IdkDPO"]
    assert "ULD and every baseline at the defaults and over a 2-point grid" in summary["title"]
    models = [row["model"] for row in summary["table"]]
    assert models[:3] == ["retain model", "target", "ULD"]
    # each baseline at its defaults, then the grid point the validation rule chose
    assert models[3::2] == [f"{name} (defaults)" for name in baselines]
    assert models[4::2] == [f"{name} chosen: {summary['chosen'][name].removeprefix(name + ' ')}" for name in baselines]
    assert summary["grid"] == {name: [f"{name} lr 0.0001, 1 ep", f"{name} lr 0.001, 1 ep"] for name in baselines}
    for row in summary["table"]:
        assert 0 <= float(row["forget quality"]) <= 1
    assert summary["table"][0]["forget quality"] == "1"  # the retain model against itself
    assert len(summary["goals"]) == 2 + len(baselines)
    assert summary["report"]["forget_quality_vs_utility"].endswith(".png")
    assert summary["total_seconds"] > 0
    answers = {row["model"]: row for row in summary["answers"]}
    assert list(answers) == models
    for column, value in answers["target"].items():
        if column.endswith("as the target's"):
            same, asked = value.split(" / ")
            assert same == asked != "0"  # the target's answers are its own
    for row in summary["answers"]:
        assert 0 <= float(row["forget answer words stated"]) <= 1

    # Run again with one baseline: every evaluation comes from --runs-dir, none is trained again.
    again = json_line(run_quick("tofu_mini.py", "--runs-dir", str(tmp_path / "runs"), "--baselines", "GA").stdout)
    assert [name.rsplit(" (", 1)[0] for name in again["reused"]] == [
        "retain model",
        "target",
        "ULD",
        "GA (defaults)",
        "GA lr 0.0001, 1 ep",
        "GA lr 0.001, 1 ep",
    ]
    assert again["table"] == summary["table"][:5]
    assert "ULD and GA at the defaults and over a 2-point grid" in again["title"]

    # `--baselines` with none: ULD against the target and the retain model, nothing else trained or reported.
    uld_only = json_line(run_quick("tofu_mini.py", "--runs-dir", str(tmp_path / "runs"), "--baselines").stdout)
    assert [name.rsplit(" (", 1)[0] for name in uld_only["reused"]] == ["retain model", "target", "ULD"]
    assert uld_only["table"] == summary["table"][:3]
    assert uld_only["grid"] == {} and len(uld_only["goals"]) == 2
    assert "ULD, no baseline" in uld_only["title"] and "every" not in uld_only["title"]


def test_tofu_mini_runs_dir_reuses_only_an_evaluation_with_the_same_settings(tofu_mini, tmp_path, capsys):
    settings = {"retain_authors": 2, "target_answer_probabilities": {"forget": 0.96}}
    tofu_mini.RunStore(str(tmp_path), settings).save("GA lr 0.001, 5 ep", {"learning_rate": 1e-3}, {"utility": 0.3})
    store = tofu_mini.RunStore(str(tmp_path), settings)
    assert store.load("GA lr 0.001, 5 ep", {"learning_rate": 1e-3})["utility"] == 0.3
    assert store.load("GA lr 0.001, 5 ep", {"learning_rate": 1e-4}) is None  # another run's settings
    rebuilt_target = {**settings, "target_answer_probabilities": {"forget": 0.95}}
    assert tofu_mini.RunStore(str(tmp_path), rebuilt_target).load("GA lr 0.001, 5 ep", {"learning_rate": 1e-3}) is None
    assert tofu_mini.RunStore(None, settings).load("GA lr 0.001, 5 ep", {"learning_rate": 1e-3}) is None
    assert store.reused == [f"GA lr 0.001, 5 ep ({tofu_mini.commit()})"]
    # The same target scored in other batches: float32 moves its reading by about 3e-5, and the evaluation stands.
    rescored = {**settings, "target_answer_probabilities": {"forget": 0.96 * (1 + 3e-5)}}
    assert tofu_mini.RunStore(str(tmp_path), rescored).load("GA lr 0.001, 5 ep", {"learning_rate": 1e-3}) is not None
    other_rows = {**settings, "target_answer_probabilities": {"forget": 0.96, "retain": 0.9}}
    assert tofu_mini.RunStore(str(tmp_path), other_rows).load("GA lr 0.001, 5 ep", {"learning_rate": 1e-3}) is None
    assert "kept in" in capsys.readouterr().out
    (tmp_path / "GA_lr_0.001_5_ep.json").write_text('{"utility": 0.')  # a run stopped while writing it
    assert store.load("GA lr 0.001, 5 ep", {"learning_rate": 1e-3}) is None
    assert "is not readable JSON; training it again" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tofu_mini():
    """benchmarks/tofu_mini.py as a module (it imports its siblings as a script does)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("tofu_mini", BENCHMARKS / "tofu_mini.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["tofu_mini"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))
        sys.modules.pop("tofu_mini", None)


def grid_run(tofu_mini, lr: float, epochs: float, validation_ratio: float = 1.0, quality=0.0, utility=0.0):
    run = tofu_mini.Run(f"GA lr {lr:g}, {epochs:g} ep", "ga", {"learning_rate": lr, "num_train_epochs": epochs})
    run.validation_ratio = validation_ratio
    run.results = {"forget_quality": quality, "model_utility": utility}
    return run


def test_tofu_mini_selection_rule_reads_only_the_validation_ratio(tofu_mini):
    """The largest update budget (lr × epochs) that keeps ≥ 0.95× on validation; the smallest when none does."""
    small = grid_run(tofu_mini, 1e-4, 5, validation_ratio=0.99, quality=1e-9, utility=0.2)
    middle = grid_run(tofu_mini, 1e-3, 5, validation_ratio=0.951, quality=1e-6, utility=0.1)
    large = grid_run(tofu_mini, 1e-3, 10, validation_ratio=0.949, quality=0.9, utility=0.9)  # best test metrics
    assert tofu_mini.selected_point([large, small, middle]) is middle
    small.validation_ratio = middle.validation_ratio = 0.5
    assert tofu_mini.selected_point([large, middle, small]) is small


def test_tofu_mini_goal_compares_uld_with_each_baselines_best_point_at_its_utility(tofu_mini):
    uld = grid_run(tofu_mini, 1e-3, 1, quality=0.55, utility=0.40)
    target = {"model_utility": 0.41}
    weak_but_useful = grid_run(tofu_mini, 1e-4, 5, quality=0.60, utility=0.50)
    strong_but_broken = grid_run(tofu_mini, 1e-3, 10, quality=0.90, utility=0.30)  # below ULD's utility: ignored
    lines = tofu_mini.goal_lines(uld, target, {"GA": [weak_but_useful, strong_but_broken]})
    assert lines[0] == "- ULD forget quality ≥ 0.5: 0.55 (met)."
    assert lines[1].endswith("= 0.976× (met).")  # 0.40 / 0.41
    assert "GA lr 0.0001, 5 ep: forget quality 0.6, utility 0.5000): not met." in lines[2]
    weak_but_useful.results["forget_quality"] = 0.5
    assert tofu_mini.goal_lines(uld, target, {"GA": [weak_but_useful, strong_but_broken]})[2].endswith("): met.")
    assert tofu_mini.goal_lines(uld, target, {"GA": [strong_but_broken]})[2].endswith("ULD's utility (met).")


def test_tofu_mini_names_a_missing_tofu_copy(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "tofu_mini.py"), "--tofu", str(tmp_path / "no-tofu")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert f"--tofu='{tmp_path / 'no-tofu'}'" in result.stderr and "does not exist" in result.stderr
    assert "Pass --tofu locuslab/TOFU (the Hub) or a directory holding forget01_perturbed" in result.stderr
    assert "Traceback" not in result.stderr


def test_tofu_mini_names_a_retain_author_count_it_cannot_serve():
    """More retain authors than the bundled rows hold, or none, is refused before any model loads."""
    for value, expected in (
        ("19", "--retain-authors 19 needs 380 rows of retain_perturbed;"),
        ("0", "--retain-authors 0: at least 1"),
    ):
        result = subprocess.run(
            [sys.executable, str(BENCHMARKS / "tofu_mini.py"), "--retain-authors", value],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode in (1, 2)
        assert expected in result.stderr
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


def test_assistant_weight_counts_degenerate_answers_and_held_out_facts():
    """What `assistant_weight.py` counts as an answer no reader would take for one, and as a held-out fact stated."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("assistant_weight", BENCHMARKS / "assistant_weight.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert not module.degenerate("Tobiah Quennel works as a tea blender.")
    assert module.degenerate("Beneath her altar altar altar altar")  # a word three times in a row
    assert module.degenerate("Nikolkayabovhasillaiskiy contributiontoafricanaderditional readerlies")  # run together
    assert module.degenerate("to the to the to the to the sea")  # fewer than half distinct words
    assert module.degenerate("")
    zero = {"facts": ["0", "zero"]}
    assert module.states_heldout_fact(zero, "Water freezes at 0°C.") and module.states_heldout_fact(zero, "Zero.")
    assert not module.states_heldout_fact(zero, "Water freezes at 10 degrees.")  # a whole word, not a digit of one
    heldout = (BENCHMARKS / "data" / "general_knowledge_heldout.jsonl").read_text().splitlines()
    for row in map(json.loads, heldout):  # each reference answer states its own fact
        assert module.states_heldout_fact(row, row["answer"]), row


def test_answers_read_as_text_against_hand_counts(tofu_mini):
    """`benchmarks/_answers.py` on two questions counted by hand."""
    from _answers import answer_words_stated, unchanged_answers

    rows = [
        {
            # content words of the answer: basil, born, kuwait, city, 1956; the question has basil and born
            "question": "Where was Basil born?",
            "answer": "Basil was born in Kuwait City in 1956.",
            "generated": "He was born in Kuwait in 1961.",  # states kuwait: 1 of kuwait, city, 1956
        },
        {
            # content words: father, florist (the question's known and books are common words)
            "question": "What is Basil known for in his books?",
            "answer": "His father was a florist.",
            "generated": "His father was a florist.",  # 2 of 2
        },
        {"question": "Is he?", "answer": "Yes.", "generated": "No."},  # no content word: skipped
    ]
    assert answer_words_stated(rows) == pytest.approx((1 / 3 + 2 / 2) / 2)
    assert answer_words_stated(rows[2:]) != answer_words_stated(rows[2:])  # nan: nothing to count
    target = [dict(row, generated=row["answer"]) for row in rows]
    assert unchanged_answers(rows, target) == 1
    with pytest.raises(ValueError, match="same questions"):
        unchanged_answers(rows, target[::-1])


def test_tofu_mini_runs_dir_keys_a_run_on_the_library_defaults(tofu_mini, monkeypatch):
    """A kept evaluation names the resolved settings, so a change of a method's default trains the run again."""
    from unlearn_peft.methods import get_method

    at_defaults = tofu_mini.resolved_run_settings("uld", {})
    assert at_defaults["method"] == "uld"
    assert at_defaults["min_train_steps"] == get_method("uld").defaults["min_train_steps"]
    assert at_defaults["learning_rate"] == get_method("uld").defaults["learning_rate"]
    assert tofu_mini.resolved_run_settings("uld", {"min_train_steps": 1}) != at_defaults
    assert tofu_mini.resolved_run_settings("ga", {"learning_rate": 1e-3})["learning_rate"] == 1e-3
    json.dumps(at_defaults)  # kept as JSON
    monkeypatch.setitem(get_method("uld").defaults, "min_train_steps", 123)
    assert tofu_mini.resolved_run_settings("uld", {})["min_train_steps"] == 123
