"""Baseline objectives (GA, GD, KL, NPO, SimNPO, IdkDPO): loss values by hand, step directions, adapters, errors."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from peft import AutoPeftModelForCausalLM
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from unlearn_peft import SIDECAR_NAME, UnlearnConfig, UnlearnTrainer
from unlearn_peft.losses import (
    AnswerTokens,
    dpo_loss,
    gradient_ascent_loss,
    npo_loss,
    reference_kl_loss,
    sequence_log_probs,
    simnpo_loss,
)

from .conftest import qa_only

METHODS = [
    ("ga", None),
    ("ga", "nll"),
    ("ga", "kl"),
    ("npo", None),
    ("npo", "kl"),
    ("simnpo", None),
    ("idk_dpo", None),
]


def _fixed_logits_and_labels():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 7, generator=generator)
    labels = torch.tensor([[-100, 2, 3, 4], [-100, -100, 5, 6]])
    return logits, labels


def _hand_sequence_log_prob(logits, labels, row):
    total = 0.0
    for position in range(labels.shape[1] - 1):
        target = labels[row, position + 1].item()
        if target != -100:
            total += math.log(torch.softmax(logits[row, position], dim=-1)[target].item())
    return total


def test_sequence_log_probs_and_losses_match_hand_computation():
    logits, labels = _fixed_logits_and_labels()
    answer = AnswerTokens.from_logits(logits, labels)
    log_probs, lengths = sequence_log_probs(answer)
    hand = [_hand_sequence_log_prob(logits, labels, row) for row in range(2)]
    assert log_probs.tolist() == pytest.approx(hand, rel=1e-5) and lengths.tolist() == [3, 2]

    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    reference = torch.tensor([-5.0, -4.0])
    beta = 0.1
    expected_npo = (
        sum(-(2 / beta) * math.log(sigmoid(-beta * (lp - r))) for lp, r in zip(hand, [-5.0, -4.0], strict=True)) / 2
    )
    assert npo_loss(log_probs, reference, beta).item() == pytest.approx(expected_npo, rel=1e-5)
    assert npo_loss(reference, reference, beta).item() == pytest.approx((2 / beta) * math.log(2), rel=1e-6)

    beta, delta = 4.5, 0.3
    expected_simnpo = (
        sum(
            -(2 / beta) * math.log(sigmoid(-(beta / n) * lp - beta * delta))
            for lp, n in zip(hand, [3, 2], strict=True)
        )
        / 2
    )
    assert simnpo_loss(log_probs, lengths, beta, delta).item() == pytest.approx(expected_simnpo, rel=1e-5)

    chosen, chosen_reference = torch.tensor([-2.0, -3.0]), torch.tensor([-2.5, -2.0])
    beta = 0.1
    expected_dpo = (
        sum(
            -(2 / beta) * math.log(sigmoid(beta * ((c - cr) - (r - rr))))
            for c, cr, r, rr in zip([-2.0, -3.0], [-2.5, -2.0], hand, [-5.0, -4.0], strict=True)
        )
        / 2
    )
    assert dpo_loss(chosen, chosen_reference, log_probs, reference, beta).item() == pytest.approx(
        expected_dpo, rel=1e-5
    )

    nll = -sum(hand) / 5
    assert gradient_ascent_loss(answer).item() == pytest.approx(-nll, rel=1e-5)
    assert reference_kl_loss(answer, answer).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(1))
    kl_terms = []
    for row in range(2):
        for position in range(3):
            if labels[row, position + 1] != -100:
                p_ref = torch.softmax(other[row, position], -1)
                p = torch.softmax(logits[row, position], -1)
                kl_terms.append(float((p_ref * (p_ref.log() - p.log())).sum()))
    other_answer = AnswerTokens.from_logits(other, labels)
    assert reference_kl_loss(answer, other_answer).item() == pytest.approx(sum(kl_terms) / 5, rel=1e-5)


def _trainer(tmp_path, model, tokenizer, forget, retain, method, retain_loss, **overrides):
    settings = dict(
        output_dir=str(tmp_path / f"{method}-{retain_loss}"),
        method=method,
        retain_loss=retain_loss,
        per_device_train_batch_size=2,
        max_steps=1,
        logging_steps=1,
        save_strategy="no",
        max_length=96,
        use_cpu=True,
        disable_tqdm=True,
        report_to="none",
        seed=0,
        warmup_steps=0,  # a warm-up would make the first step's learning rate 0
    )
    args = UnlearnConfig(**{**settings, **overrides})
    return UnlearnTrainer(model, args=args, forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer)


def _forget_log_probs(trainer, batch):
    with torch.no_grad():
        logits = trainer.model(input_ids=batch.forget.input_ids, attention_mask=batch.forget.attention_mask).logits
    return sequence_log_probs(AnswerTokens.from_logits(logits, batch.forget.labels))[0]


@pytest.mark.parametrize(("method", "retain_loss"), METHODS)
def test_loss_by_hand_and_one_step_lowers_forget_likelihood(
    tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain, method, retain_loss
):
    # A random model gives every answer token log-prob ≈ −log V ≈ −10.8, where SimNPO's default β=4.5 saturates
    # (σ(4.5·10.8) ≈ 1, zero gradient); a small β keeps its gradient alive here.
    # SimNPO's forget term is weighted γ = 0.125; next to a full-weight retain NLL on a random model one step would
    # show the retain term's direction, so the retain term is lightened here.
    extra = {"beta": 0.05, "retain_loss_weight": 0.1} if method == "simnpo" else {}
    trainer = _trainer(
        tmp_path,
        make_tiny_llama(),
        tokenizer,
        qa_only(tofu_forget[:2]),
        qa_only(tofu_retain[:2]),
        method,
        retain_loss,
        learning_rate=1e-2,
        **extra,
    )
    model = trainer.model.eval()  # no dropout, so the hand computation sees the same forward
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch).item()
        forget_logits = model(input_ids=batch.forget.input_ids, attention_mask=batch.forget.attention_mask).logits
        log_probs, lengths = sequence_log_probs(AnswerTokens.from_logits(forget_logits, batch.forget.labels))
        tokens = lengths.sum().item()
        args = trainer.args
        if method == "ga":
            expected = log_probs.sum().item() / tokens
        elif method == "npo":
            # At initialisation (LoRA B = 0) the model is its reference: log σ(0) for every sequence.
            assert torch.allclose(batch.forget.reference_log_prob, log_probs, atol=1e-4)
            expected = (2 / args.beta) * math.log(2)
        elif method == "simnpo":
            # Weighted by γ = 0.125, open-unlearning's configs/trainer/SimNPO.yaml.
            assert args.forget_loss_weight == 0.125
            expected = 0.125 * (-(2 / args.beta) * F.logsigmoid(-(args.beta / lengths) * log_probs)).mean().item()
        else:
            expected = (2 / args.beta) * math.log(2)  # policy == reference on both sides at initialisation
        if retain_loss == "nll" or (retain_loss is None and method != "ga"):
            retain_logits = model(input_ids=batch.retain.input_ids, attention_mask=batch.retain.attention_mask).logits
            retain_log_probs, retain_lengths = sequence_log_probs(
                AnswerTokens.from_logits(retain_logits, batch.retain.labels)
            )
            retain_weight = 0.1 if method == "simnpo" else 1.0
            expected += retain_weight * -retain_log_probs.sum().item() / retain_lengths.sum().item()
        # retain_loss="kl" adds KL(π_ref ‖ π) = 0 at initialisation.
    assert loss == pytest.approx(expected, rel=1e-4, abs=1e-5)

    before = _forget_log_probs(trainer, batch)
    trainer.model.train()
    trainer.train()
    trainer.model.eval()
    after = _forget_log_probs(trainer, batch)
    assert after.sum() < before.sum()


def test_baseline_adapter_is_a_standard_peft_adapter_with_sidecar(
    tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain
):
    make_tiny_llama().save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    trainer = _trainer(
        tmp_path, str(tmp_path / "base"), tokenizer, qa_only(tofu_forget[:2]), qa_only(tofu_retain[:2]), "npo", "kl"
    )
    trainer.train()
    trainer.save_model(str(tmp_path / "adapter"))
    sidecar = json.loads((tmp_path / "adapter" / SIDECAR_NAME).read_text())
    assert sidecar["method"] == "npo" and sidecar["training"]["retain_loss"] == "kl"
    assert sidecar["training"]["beta"] == 0.1 and sidecar["assistant_weight"] is None
    loaded = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "adapter")
    layers = {int(n.split(".layers.")[1].split(".")[0]) for n, _ in loaded.named_parameters() if "lora_A" in n}
    assert layers == {0, 1, 2, 3}  # baselines adapt every layer
    ids = tokenizer("Hello", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        trained = trainer.model.eval()(input_ids=ids).logits
        torch.testing.assert_close(loaded.eval()(input_ids=ids).logits, trained, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "npo", "retain_loss": "l2"}, r"unknown retain_loss='l2'. Choose one of: none, nll, kl"),
        ({"method": "uld", "retain_loss": "nll"}, r"retain_loss='nll' does not apply to method='uld'"),
        ({"method": "idk_dpo", "refusal_answers": []}, r"refusal_answers is empty"),
        ({"method": "npo", "beta": 0.0}, r"beta=0.0 must be > 0"),
    ],
)
def test_bad_baseline_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UnlearnConfig(output_dir="x", **kwargs)


def test_idk_dpo_needs_prompt_answer_rows(tmp_path, make_tiny_llama, tokenizer):
    with pytest.raises(ValueError, match=r"language-modelling format .* idk_dpo needs prompt/answer rows"):
        _trainer(tmp_path, make_tiny_llama(), tokenizer, [{"text": "a fact"}], [{"text": "b"}], "idk_dpo", None)


def test_idk_dpo_chosen_side_uses_refusals(tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain):
    trainer = _trainer(
        tmp_path,
        make_tiny_llama(),
        tokenizer,
        qa_only(tofu_forget[:3]),
        qa_only(tofu_retain[:2]),
        "idk_dpo",
        None,
        refusal_answers=["No idea.", "Cannot say."],
    )
    item = trainer.train_dataset[2]
    chosen = tokenizer.decode([t for t in item["forget"]["refusal_labels"] if t != -100])
    assert chosen == "No idea.<|im_end|>\n"
    assert "refusal_reference_log_prob" in item["forget"] and "reference_log_prob" in item["forget"]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "retain_loss"), METHODS)
def test_every_method_runs_on_a_4bit_nf4_base(
    tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain, method, retain_loss
):
    make_tiny_llama().save_pretrained(tmp_path / "base")
    model = AutoModelForCausalLM.from_pretrained(
        tmp_path / "base",
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        ),
        device_map={"": "cpu"},
    )
    trainer = _trainer(
        tmp_path,
        model,
        tokenizer,
        qa_only(tofu_forget[:2]),
        qa_only(tofu_retain[:2]),
        method,
        retain_loss,
        max_steps=2,
        learning_rate=1e-2,
    )
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss_forget" in entry]
    assert len(losses) == 2 and all(math.isfinite(value) for value in losses)
    assert any(not torch.equal(lora_before[n], p) for n, p in trainer.model.named_parameters() if "lora_B" in n)


@pytest.mark.parametrize("method", ["npo", "idk_dpo"])
def test_precomputed_reference_equals_recomputing_it(
    tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain, method
):
    losses = []
    for precompute in (True, False):
        trainer = _trainer(
            tmp_path,
            make_tiny_llama(),
            tokenizer,
            qa_only(tofu_forget[:2]),
            qa_only(tofu_retain[:2]),
            method,
            None,
            precompute_reference_log_probs=precompute,
        )
        model = trainer.model
        with torch.no_grad():  # make the adapter non-zero, so the reference differs from the policy
            lora_b = [parameter for name, parameter in model.named_parameters() if "lora_B" in name]
            for index, parameter in enumerate(lora_b):
                parameter.normal_(0, 0.05, generator=torch.Generator().manual_seed(index))
        model.eval()
        batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
        assert (batch.forget.reference_log_prob is not None) == precompute
        with torch.no_grad():
            losses.append(trainer.compute_loss(model, batch).item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
