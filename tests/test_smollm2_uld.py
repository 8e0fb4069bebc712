"""End-to-end ULD training on the real SmolLM2-135M-Instruct (offline), LoRA and 4-bit QLoRA."""

import math

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from unlearn_peft import UnlearnConfig, UnlearnTrainer
from unlearn_peft.data import pad_sequences
from unlearn_peft.evaluation import answer_probability
from unlearn_peft.losses import AnswerTokens, nll_loss
from unlearn_peft.modeling import ULDModel

from .conftest import qa_only, tiny_uld_args

pytestmark = pytest.mark.slow


def _assistant_metrics(trainer: UnlearnTrainer, forget_rows, retain_rows) -> tuple[float, float]:
    """(mean NLL on forget answers, mean entropy of the next-token distribution on retain answers)."""
    model = trainer.model.eval()
    pad_token_id = trainer.processing_class.pad_token_id
    forget_batch = pad_sequences(forget_rows, pad_token_id)
    retain_batch = pad_sequences(retain_rows, pad_token_id)
    with torch.no_grad():
        forget_logits = model(input_ids=forget_batch.input_ids, attention_mask=forget_batch.attention_mask).logits
        nll = nll_loss(AnswerTokens.from_logits(forget_logits, forget_batch.labels)).item()
        retain_logits = model(input_ids=retain_batch.input_ids, attention_mask=retain_batch.attention_mask).logits[
            :, :-1
        ]
        mask = retain_batch.labels[:, 1:].ne(-100)
        log_probs = torch.log_softmax(retain_logits.float(), dim=-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)[mask].mean().item()
    model.train()
    return nll, entropy


@pytest.fixture(scope="module")
def trained_smollm2(tmp_path_factory, smollm2_path, tokenizer, tofu_forget, tofu_retain):
    """Train a ULD assistant on SmolLM2-135M once for this module; record what the tests check."""
    root = tmp_path_factory.mktemp("smollm2_uld")
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    args = UnlearnConfig(
        output_dir=str(root / "out"),
        per_device_train_batch_size=2,
        max_steps=120,
        learning_rate=3e-3,
        logging_steps=10,
        stop_when_converged=False,  # these tests check the assistant after a fixed budget
        save_strategy="no",
        max_length=128,
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = UnlearnTrainer(
        model,
        args=args,
        forget_dataset=qa_only(tofu_forget[:4]),
        retain_dataset=qa_only(tofu_retain[:4]),
        processing_class=tokenizer,
    )
    target_pointers = {tensor.data_ptr() for tensor in model.state_dict().values()}
    assistant_base = [p for n, p in trainer.model.named_parameters() if "lora_" not in n]
    forget_rows, retain_rows = trainer.train_dataset.forget, trainer.train_dataset.retain
    start = _assistant_metrics(trainer, forget_rows, retain_rows)
    trainer.train()
    end = _assistant_metrics(trainer, forget_rows, retain_rows)
    trainer.save_model(str(root / "adapter"))
    return {
        "model": model,
        "before": before,
        "trainer": trainer,
        "shares_storage": bool(assistant_base) and all(p.data_ptr() in target_pointers for p in assistant_base),
        "start": start,
        "end": end,
        "adapter": root / "adapter",
    }


def test_uld_on_smollm2_remembers_forget_and_flattens_retain(trained_smollm2, tokenizer):
    assert trained_smollm2["trainer"].assistant_num_layers == 7  # a quarter of SmolLM2's 30 layers
    assert trained_smollm2["shares_storage"]  # no copy: the assistant's frozen weights are the target's tensors
    (nll_start, entropy_start), (nll_end, entropy_end) = trained_smollm2["start"], trained_smollm2["end"]
    log_vocab = math.log(len(tokenizer))
    print(
        f"forget NLL {nll_start:.3f} -> {nll_end:.3f}; retain entropy {entropy_start:.3f} -> {entropy_end:.3f} "
        f"(log V = {log_vocab:.3f})"
    )
    assert nll_end < 0.1 * nll_start
    assert entropy_end > 0.9 * log_vocab and entropy_end > entropy_start

    before, after = trained_smollm2["before"], trained_smollm2["model"].state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)

    saved = load_file(trained_smollm2["adapter"] / "adapter_model.safetensors")
    assert {int(key.split(".layers.")[1].split(".")[0]) for key in saved} == set(range(7))
    assert all(".lora_A." in key or ".lora_B." in key for key in saved)
    assert len(saved) == 7 * 7 * 2  # 7 layers × 7 projections × (A, B)


def test_uld_model_loads_the_adapter_in_one_line_and_unlearns(trained_smollm2, tokenizer, tofu_forget, tofu_retain):
    model = ULDModel.from_pretrained(trained_smollm2["adapter"])  # base loaded from the path in the sidecar
    base = trained_smollm2["model"]

    def ratio(rows):
        values = [
            answer_probability(model, tokenizer, r["question"], r["answer"])
            / answer_probability(base, tokenizer, r["question"], r["answer"])
            for r in rows
        ]
        return sum(values) / len(values)

    forget_ratio, retain_ratio = ratio(tofu_forget[:4]), ratio(tofu_retain[:4])
    print(f"answer probability / base: forget {forget_ratio:.3f}, retain {retain_ratio:.3f}")
    # The trainer seeds the LoRA's init (args.seed); before, it depended on the tests that ran earlier in the process.
    # Measured with the seeded init: forget 0.000, retain 0.575.
    # This fixed 120-step budget leaves the retain term unconverged, which costs retain probability (issue #15's
    # goal is ≥ 0.97×); the bar here guards against a broken load (retain near 0), not that goal.
    assert forget_ratio < 0.2 and retain_ratio > 0.5

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of Italy?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    generated = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(generated[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert generated.shape[1] > prompt["input_ids"].shape[1] and answer.strip()


def test_uld_model_refuses_a_different_base(trained_smollm2, make_tiny_llama):
    with pytest.raises(ValueError, match=r"different base model .*num_hidden_layers: adapter 30 vs base 4"):
        ULDModel.from_pretrained(trained_smollm2["adapter"], base_model=make_tiny_llama(num_layers=4))


def test_uld_model_on_a_4bit_base_shares_weights_and_generates(trained_smollm2, smollm2_path, tokenizer):
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    with pytest.raises(ValueError, match="merge_assistant=False"):
        ULDModel.from_pretrained(trained_smollm2["adapter"], quantization_config=quantization, device_map={"": "cpu"})
    model = ULDModel.from_pretrained(
        trained_smollm2["adapter"], merge_assistant=False, quantization_config=quantization, device_map={"": "cpu"}
    )
    assert type(model.target.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    prompt = tokenizer(["The capital of France is"], return_tensors="pt")
    generated = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    assert generated.shape == (1, prompt["input_ids"].shape[1] + 6)


def test_qlora_nf4_assistant_trains_on_cpu(tmp_path, smollm2_path, tokenizer, tofu_forget, tofu_retain):
    args = UnlearnConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=2,
        max_steps=3,
        learning_rate=3e-3,
        logging_steps=1,
        save_strategy="no",
        max_length=96,
        use_cpu=True,
        disable_tqdm=True,
        assistant_num_layers=2,
        model_init_kwargs={
            "quantization_config": BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
            ),
            "dtype": "float32",
            "device_map": {"": "cpu"},
        },
    )
    trainer = UnlearnTrainer(
        str(smollm2_path),
        args=args,
        forget_dataset=qa_only(tofu_forget[:2]),
        retain_dataset=qa_only(tofu_retain[:2]),
        processing_class=tokenizer,
    )
    q_proj = trainer.target_model.model.layers[0].self_attn.q_proj
    assert type(q_proj).__name__ == "Linear4bit" and q_proj.weight.quant_state.quant_type == "nf4"
    packed_before = q_proj.weight.data.clone()
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss_forget" in entry]
    assert len(logs) == 3 and all(math.isfinite(entry["loss"]) for entry in logs)
    assert any(not torch.equal(lora_before[n], p) for n, p in trainer.model.named_parameters() if "lora_B" in n)
    assert torch.equal(q_proj.weight.data, packed_before)
    trainer.save_model(str(tmp_path / "adapter"))
    assert {
        int(k.split(".layers.")[1].split(".")[0])
        for k in load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    } == {0, 1}


def test_plausible_retain_term_reads_the_real_targets_plausible_tokens(
    tmp_path, smollm2_path, tokenizer, tofu_forget, tofu_retain
):
    """The opt-in plausible-set retain term on SmolLM2: the cached sets equal the filter's definition applied to the
    target's own forward over each retain row alone (no padding, no batching), and the term trains."""
    from unlearn_peft.methods.uld import MAX_PLAUSIBLE_TOKENS

    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
    trainer = UnlearnTrainer(
        model,
        args=tiny_uld_args(tmp_path, max_steps=2, logging_steps=1, plausible_retain_loss_weight=1.0),
        forget_dataset=qa_only(tofu_forget[:2]),
        retain_dataset=qa_only(tofu_retain[:3]),
        processing_class=tokenizer,
    )
    retain = trainer.train_dataset.retain
    sizes = []
    for row in retain:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([row["input_ids"]])).logits[0].double()
        labels = row["labels"]
        positions = [t for t in range(len(labels) - 1) if labels[t + 1] != -100]
        assert len(row["plausible_token_ids"]) == len(positions)
        for position, cached in zip(positions, row["plausible_token_ids"], strict=True):
            probabilities = torch.softmax(logits[position], dim=-1)
            order = probabilities.argsort(descending=True)
            plausible = set(order[:10].tolist()) | set(
                (probabilities >= 0.01 * probabilities.max()).nonzero().flatten().tolist()
            )
            if len(plausible) > MAX_PLAUSIBLE_TOKENS:  # the target is unsure there: its most probable tokens
                plausible = set(order[:MAX_PLAUSIBLE_TOKENS].tolist())
            assert cached == sorted(plausible)
            sizes.append(len(cached))
    # On TOFU's fictitious authors the target is sure at some positions (the floor binds) and unsure at others.
    assert min(sizes) == 10 and max(sizes) == MAX_PLAUSIBLE_TOKENS
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss_retain_plausible" in entry]
    assert len(logs) == 2 and all(math.isfinite(entry["loss_retain_plausible"]) for entry in logs)
    assert logs[0]["loss_retain_plausible"] > 0
