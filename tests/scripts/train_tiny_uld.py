"""Train a tiny ULD assistant for one optimiser step; launched by tests under `accelerate launch`.

Usage: train_tiny_uld.py TOKENIZER_DIR FIXTURES_DIR OUTPUT_DIR PER_DEVICE_BATCH_SIZE
"""

import json
import sys
from pathlib import Path

from peft import LoraConfig
from transformers import AutoTokenizer

from unlearn_peft import UnlearnConfig, UnlearnTrainer
from unlearn_peft.testing import tiny_random_llama


def main() -> None:
    tokenizer_dir, fixtures, output_dir, batch_size = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = tiny_random_llama(tokenizer)
    read = lambda name: [json.loads(line) for line in open(fixtures / name)]  # noqa: E731
    forget = [{"question": r["question"], "answer": r["answer"]} for r in read("forget01_perturbed.json")[:4]]
    retain = [{"question": r["question"], "answer": r["answer"]} for r in read("retain_perturbed_head40.json")[:4]]
    args = UnlearnConfig(
        output_dir=output_dir,
        per_device_train_batch_size=batch_size,
        max_steps=1,
        train_sampling_strategy="sequential",
        warmup_steps=0,
        optim="sgd",
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        assistant_num_layers=2,
        max_length=96,
        seed=0,
    )
    trainer = UnlearnTrainer(
        model,
        args=args,
        forget_dataset=forget,
        retain_dataset=retain,
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"]),
    )
    trainer.train()
    state = trainer.accelerator.state
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(output_dir) / f"rank{state.process_index}.json", "w") as handle:
        json.dump({"world_size": state.num_processes, "global_step": trainer.state.global_step}, handle)
    trainer.save_model(output_dir)


if __name__ == "__main__":
    main()
