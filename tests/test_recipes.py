"""Recipes, the trainer scripts and the `unlearn-peft` command line (issue #7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig
from safetensors.torch import load_file

from unlearn_peft import UnlearnSidecar
from unlearn_peft.cli import main as cli_main
from unlearn_peft.config import METHOD_DEFAULTS
from unlearn_peft.demo import DEMO_SETTINGS
from unlearn_peft.demo import main as demo_main
from unlearn_peft.recipe import build_trainer, parse_recipe
from unlearn_peft.testing import tiny_random_llama

from .conftest import FIXTURES, read_jsonl

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((ROOT / "recipes").glob("**/*.yaml"))
TRAINING_RECIPES = [path for path in RECIPES if "accelerate" not in path.parts]
ACCELERATE_CONFIGS = sorted((ROOT / "recipes" / "accelerate").glob("*.yaml"))
TOFU_FIXTURES = FIXTURES / "tofu"

TINY_LAYERS = 10


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A saved tiny random Llama (10 layers, so recipes' K=8 fits) with the SmolLM2 tokenizer."""
    directory = tmp_path_factory.mktemp("tiny-llama")
    tiny_random_llama(tokenizer, num_layers=TINY_LAYERS, hidden_size=32).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def stand_in_overrides(recipe: Path, model_dir: Path, output_dir: Path) -> list[str]:
    """Overrides that run a recipe on the tiny model and the TOFU fixtures (datasets kept if embedded); a K too large
    for the tiny model (the 70B recipe's 20) becomes its quarter, as a 20-of-80 assistant is."""
    raw = yaml.safe_load(recipe.read_text())
    overrides = ["--model_name_or_path", str(model_dir), "--output_dir", str(output_dir), "--max_steps", "1"]
    if raw.get("assistant_num_layers", 0) >= TINY_LAYERS:
        overrides += ["--assistant_num_layers", str(TINY_LAYERS // 4)]
    overrides += ["--bf16", "false", "--use_cpu", "true", "--dtype", "float32", "--report_to", "none"]
    if not str(raw["forget_dataset_name"]).startswith("embedded:"):
        overrides += ["--forget_dataset_name", str(TOFU_FIXTURES), "--forget_dataset_config", "forget01_perturbed"]
        overrides += [
            "--retain_dataset_name",
            str(TOFU_FIXTURES),
            "--retain_dataset_config",
            "retain_perturbed_head40",
        ]
        overrides += ["--max_forget_rows", "4", "--max_retain_rows", "4"]
    return ["--config", str(recipe), *overrides]


def test_recipe_inventory():
    names = {path.relative_to(ROOT / "recipes").as_posix() for path in RECIPES}
    for method in ("uld", "ga", "gd", "npo", "simnpo", "idk_dpo"):
        for split in ("01", "05", "10"):
            assert f"tofu/{method}_forget{split}.yaml" in names
    assert {"accelerate/single_gpu.yaml", "accelerate/multi_gpu.yaml", "accelerate/fsdp.yaml"} <= names
    assert {"accelerate/deepspeed_zero3.yaml", "demo/smollm2.yaml"} <= names
    assert any(name.startswith("consumer_gpu/") for name in names)


@pytest.mark.parametrize("recipe", TRAINING_RECIPES, ids=lambda p: p.relative_to(ROOT / "recipes").as_posix())
def test_every_recipe_builds_its_trainer(recipe, tiny_model_dir, tmp_path):
    raw = yaml.safe_load(recipe.read_text())
    script_args, config, model_args = parse_recipe(stand_in_overrides(recipe, tiny_model_dir, tmp_path))
    assert config.method == raw["method"]
    # A recipe without a learning rate gets the method's default (the demo recipe uses ULD's).
    learning_rate = raw.get("learning_rate", METHOD_DEFAULTS[raw["method"]]["learning_rate"])
    assert config.learning_rate == pytest.approx(float(learning_rate))
    assert config.retain_loss == raw.get("retain_loss", config.retain_loss)
    trainer = build_trainer(script_args, config, model_args)
    assert trainer.method == raw["method"]
    if raw["method"] == "uld":
        requested = raw.get("assistant_num_layers", TINY_LAYERS // 4)
        assert trainer.assistant_num_layers == (requested if requested < TINY_LAYERS else TINY_LAYERS // 4)
    if raw.get("load_in_4bit"):
        assert trainer.target_model.is_loaded_in_4bit
        assert config.model_init_kwargs["quantization_config"].bnb_4bit_quant_type == raw["bnb_4bit_quant_type"]
    assert trainer.dataset_summary["forget_rows"] > 0
    assert trainer.dataset_summary["forget_dataset"].startswith(str(script_args.forget_dataset_name))


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_configs_load(path):
    config = ClusterConfig.from_yaml_file(str(path))
    expected = {
        "single_gpu": "NO",
        "multi_gpu": "MULTI_GPU",
        "fsdp": "FSDP",
        "deepspeed_zero3": "DEEPSPEED",
    }[path.stem]
    assert str(config.distributed_type).split(".")[-1] == expected


def test_demo_recipe_matches_demo_settings():
    raw = yaml.safe_load((ROOT / "recipes" / "demo" / "smollm2.yaml").read_text())
    for key, value in DEMO_SETTINGS.items():
        assert raw[key] == pytest.approx(value) if isinstance(value, float) else raw[key] == value, key
    assert raw["model_name_or_path"] == "embedded:smollm2"


def test_recipe_trains_and_saves_adapter_with_dataset_names(tiny_model_dir, tmp_path):
    output = tmp_path / "run"
    recipe = ROOT / "recipes" / "tofu" / "npo_forget01.yaml"
    assert cli_main(["train", *stand_in_overrides(recipe, tiny_model_dir, output), "--max_steps", "2"]) == 0
    sidecar = UnlearnSidecar.load(output)
    assert sidecar.method == "npo" and sidecar.training["global_step"] == 2
    assert sidecar.training["forget_dataset"] == f"{TOFU_FIXTURES}:forget01_perturbed"
    assert (output / "adapter_model.safetensors").is_file()
    card = (output / "README.md").read_text()
    assert "NPO + gradient descent on retain" in card and "AutoPeftModelForCausalLM" in card
    # The stand-in base is a local directory: named as such, no dead link, and how to publish it properly.
    assert f"loaded from a local path (`{tiny_model_dir}`)" in card and "(#)" not in card


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_cli_missing_recipe_is_one_line(capsys):
    assert cli_main(["train", "--config", "does/not/exist.yaml"]) == 2
    line = _one_error_line(capsys)
    assert "does/not/exist.yaml" in line and "cannot be read" in line


def test_cli_unknown_key_is_one_line(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model_name_or_path: x\nlearning_rat: 0.1\n")
    assert cli_main(["train", "--config", str(recipe)]) == 2
    assert "unknown recipe keys ['learning_rat']" in _one_error_line(capsys)
    assert cli_main(["train", "--config", str(recipe).replace("bad", "missing"), "--use_cpu", "true"]) == 2
    capsys.readouterr()
    recipe.write_text("model_name_or_path: x\nuse_cpu: true\n")
    assert cli_main(["train", "--config", str(recipe), "--no_such_flag", "1"]) == 2
    assert "--no_such_flag" in _one_error_line(capsys)


def test_cli_wrong_type_is_one_line(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model_name_or_path: x\nuse_cpu: true\nlearning_rate: fast\n")
    assert cli_main(["train", "--config", str(recipe)]) == 2
    line = _one_error_line(capsys)
    assert "learning_rate" in line and "'fast'" in line and "float" in line
    assert cli_main(["train", "--config", str(recipe), "--num_train_epochs", "[1]"]) == 2
    capsys.readouterr()
    assert cli_main(["eval", "--max-rows", "many"]) == 2
    assert "--max-rows" in _one_error_line(capsys)
    assert cli_main(["push"]) == 2
    assert "required" in _one_error_line(capsys)
    assert cli_main(["frobnicate"]) == 2
    assert "unknown command" in _one_error_line(capsys)


def test_cli_help_everywhere(capsys):
    for command in (["--help"], ["train", "--help"], ["eval", "--help"], ["push", "--help"], ["demo", "--help"]):
        assert cli_main(command) == 0, command
        assert "usage" in capsys.readouterr().out.lower()


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "unlearn_peft.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "train" in result.stdout and "push" in result.stdout


def test_eval_cli_writes_json_markdown_and_plots(tiny_model_dir, tmp_path, capsys):
    adapter = tmp_path / "adapter"
    recipe = ROOT / "recipes" / "tofu" / "uld_forget01.yaml"
    assert cli_main(["train", *stand_in_overrides(recipe, tiny_model_dir, adapter)]) == 0
    output = tmp_path / "eval"
    arguments = ["eval", "--adapter", str(adapter), "--model-name", "tiny-uld", "--tofu-dataset", str(TOFU_FIXTURES)]
    arguments += ["--forget-config", "forget01_perturbed", "--retain-config", "retain_perturbed_head40"]
    arguments += ["--real-authors-config", "real_authors_perturbed_head4"]
    arguments += ["--world-facts-config", "world_facts_perturbed_head4"]
    arguments += ["--max-rows", "3", "--max-new-tokens", "4", "--output-dir", str(output)]
    assert cli_main(arguments) == 0
    results = json.loads((output / "tiny-uld.json").read_text())
    assert {name: len(split["per_question"]) for name, split in results["splits"].items()} == {
        "forget": 3,
        "retain": 3,
        "real_authors": 3,
        "world_facts": 3,
    }
    assert 0 <= results["model_utility"] <= 1
    assert (output / "summary.md").read_text().count("tiny-uld") == 1
    for png in ("forget_quality_vs_utility.png", "splits.png"):
        assert (output / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_accelerate_launch_two_processes_on_trainer_script(tiny_model_dir, tmp_path):
    """`accelerate launch --num_processes 2 trainers/unlearn.py --config ...` on CPU (gloo): both ranks train, one
    adapter is saved."""
    output = tmp_path / "ddp"
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(tiny_model_dir),
                "forget_dataset_name": str(TOFU_FIXTURES / "forget01_perturbed.json"),
                "retain_dataset_name": str(TOFU_FIXTURES / "retain_perturbed_head40.json"),
                "max_forget_rows": 8,
                "max_retain_rows": 8,
                "augment_forget_with_paraphrases": False,
                "augment_retain_with_perturbed": False,
                "assistant_num_layers": 2,
                "per_device_train_batch_size": 2,
                "num_train_epochs": 1,
                "min_train_steps": 0,
                "max_length": 96,
                "use_cpu": True,
                "report_to": "none",
                "save_strategy": "no",
                "output_dir": str(output),
            }
        )
    )
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += [str(ROOT / "trainers" / "unlearn.py"), "--config", str(recipe)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sidecar = UnlearnSidecar.load(output)
    # 8 forget rows, 2 per device, 2 processes: 2 steps (a single process would take 4).
    assert sidecar.training["world_size"] == 2 and sidecar.training["global_step"] == 2
    assert sorted(p.name for p in output.glob("*.safetensors")) == ["adapter_model.safetensors"]
    assert len(load_file(output / "adapter_model.safetensors")) == 2 * 7 * 2


def test_eval_cli_muse_writes_json_markdown_and_plot(tiny_model_dir, tmp_path, capsys):
    def write(name: str, rows: list[dict]) -> str:
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return str(path)

    forget = read_jsonl(TOFU_FIXTURES / "forget01_perturbed.json")
    retain = read_jsonl(TOFU_FIXTURES / "retain_perturbed_head40.json")
    arguments = ["eval", "--benchmark", "muse", "--model", str(tiny_model_dir), "--model-name", "tiny"]
    arguments += ["--verbmem", write("verbmem", [{"prompt": r["question"], "gt": r["answer"]} for r in forget[:3]])]
    arguments += [
        "--knowmem",
        write("knowmem", [{"question": r["question"], "answer": r["answer"]} for r in forget[:3]]),
    ]
    arguments += ["--forget-texts", write("forget", [{"text": r["answer"]} for r in forget[:4]])]
    arguments += ["--holdout-texts", write("holdout", [{"text": r["answer"]} for r in retain[:4]])]
    arguments += ["--output-dir", str(tmp_path / "out")]
    assert cli_main(arguments) == 0
    results = json.loads((tmp_path / "out" / "tiny.muse.json").read_text())
    assert len(results["verbmem"]["per_item"]) == 3 and len(results["knowmem"]["per_item"]) == 3
    assert 0 <= results["auc"] <= 1 and 0 <= results["verbmem_f"] <= 1
    assert "| tiny |" in (tmp_path / "out" / "muse_summary.md").read_text()
    assert (tmp_path / "out" / "muse.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_demo_forgets_european_capitals_in_its_greedy_answers_and_keeps_the_others(tmp_path, capsys, smollm2_path):
    """`unlearn-peft demo` exactly as `make demo` runs it, judged on the text it generates, not only probabilities."""
    output = tmp_path / "demo"
    results = demo_main(["--output-dir", str(output)])
    printed = capsys.readouterr().out
    for line in ("forget (paraphrased, unseen)", "name the capital", "before:", "after:", "ULD assistant converged"):
        assert line in printed
    stated_before, stated_after = results["stated_before"], results["stated_after"]
    # The base model knows these capitals; after unlearning, its greedy answers no longer name the forgotten ones,
    # also when asked differently, and still name the kept ones.
    # Measured: before 13 / 16 / 15, after 0 / 0 / 10 with an unseeded LoRA init, 0 / 0 / 8 since the trainer seeds
    # it (commit ec2a605). With the cache bug of issue #14 retained answers were garbage; 8 of 15 is far short of the
    # goal of all (issue #15).
    assert stated_before["forget"] >= 12 and stated_before["retain"] >= 14
    assert stated_after["forget"] <= 1
    assert stated_after["forget (paraphrased, unseen)"] <= 2
    assert stated_after["retain"] >= 8
    assert (output / "demo.png").read_bytes()[:4] == b"\x89PNG"
    training = UnlearnSidecar.load(output).training
    # The budget the README states for the demo ("at most 800 steps").
    assert training["converged"] and training["steps"] <= training["step_budget"] == 800
    # The card states what ran: the embedded base by its Hub id, the bundled datasets by name, the real step count.
    card = (output / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert "[HuggingFaceTB/SmolLM2-135M-Instruct](https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct)" in card
    assert "offline copy" in card and "(#)" not in card and str(smollm2_path) not in card
    assert "`embedded:european_capitals_forget` (bundled with unlearn-peft)" in card
    assert "`embedded:world_capitals_retain` (bundled with unlearn-peft)" in card
    assert f"| epochs / optimiser steps run | {training['epochs_run']:.4g} / {training['global_step']} |" in card
    assert training["global_step"] == training["steps"]
    assert "| assistant converged | yes:" in card
    assert not (output / "training_args.bin").exists()
