"""The method registry: every built-in method is one object, and a new method is one class plus its registration."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unlearn_peft import UnlearnConfig, UnlearnSidecar, UnlearnTrainer
from unlearn_peft.data import as_dataset, tokenize_dataset
from unlearn_peft.losses import count_loss_tokens, nll_loss
from unlearn_peft.methods import METHODS, ForgetTerm, UnlearningMethod, get_method, register_method
from unlearn_peft.model_card import render_model_card

from .conftest import qa_only, tiny_uld_args


class BoundedGradientAscent(UnlearningMethod):
    """Gradient ascent that stops pushing once the forget NLL reaches `bound`: `L_f = max(0, bound − NLL)`."""

    name = "bounded_ga"
    title = "bounded gradient ascent"
    defaults = {
        "learning_rate": 1e-4,
        "forget_loss_weight": 1.0,
        "retain_loss_weight": 1.0,
        "min_train_steps": 0,
        "retain_loss": "nll",
        "beta": None,
    }
    bound = 20.0

    def forget_term(self, answers, batch, counts, args) -> ForgetTerm:
        loss = torch.relu(self.bound - nll_loss(answers["forget"], counts.forget_tokens))
        return ForgetTerm(loss, counts.forget_tokens, count_loss_tokens(batch.forget.labels))


def test_builtin_methods_are_registered_in_order_with_their_defaults():
    assert list(METHODS) == ["uld", "ga", "npo", "simnpo", "idk_dpo"]
    assert get_method("uld").trains_assistant and not any(METHODS[name].trains_assistant for name in list(METHODS)[1:])
    assert get_method("npo").reference_groups == ("forget",)
    assert get_method("idk_dpo").reference_groups == ("forget", "refusal")
    assert UnlearnConfig(output_dir="x", method="simnpo").forget_loss_weight == 0.125


def test_a_new_method_is_one_class_and_its_registration(
    monkeypatch, make_tiny_llama, tokenizer, tofu_forget, tofu_retain, tmp_path
):
    monkeypatch.setitem(METHODS, "bounded_ga", None)  # so that the entry is removed again after the test
    register_method(BoundedGradientAscent)
    forget, retain = qa_only(tofu_forget[:4]), qa_only(tofu_retain[:4])
    model = make_tiny_llama()
    args = tiny_uld_args(
        tmp_path / "adapter", method="bounded_ga", max_steps=1, learning_rate=0.0, per_device_train_batch_size=4
    )
    trainer = UnlearnTrainer(
        model, args=args, forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer
    )
    trainer.train()
    trainer.save_model()

    # By hand: the forget answers' mean NLL under the untouched model (LoRA starts at zero, lr 0).
    tokens = tokenize_dataset(as_dataset(forget, "forget"), tokenizer, max_length=args.max_length, name="forget")
    total, count = 0.0, 0
    with torch.no_grad():
        for input_ids, labels in zip(tokens["input_ids"], tokens["labels"], strict=True):
            logits = model(torch.tensor([input_ids])).logits[0, :-1]
            target = torch.tensor(labels[1:])
            mask = target != -100
            total += F.cross_entropy(logits[mask], target[mask], reduction="sum").item()
            count += int(mask.sum())
    expected = max(0.0, BoundedGradientAscent.bound - total / count)
    assert abs(trainer.last_train_metrics["loss_forget"] - expected) < 1e-4

    assert UnlearnSidecar.load(tmp_path / "adapter").method == "bounded_ga"
    card = str(render_model_card(tmp_path / "adapter", repo_id="me/bounded"))
    assert "bounded gradient ascent + gradient descent on retain" in card
