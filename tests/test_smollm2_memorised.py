"""ULD at its defaults on a target that has memorised its facts (issue #15), so that a regression fails CI.

TOFU's situation at a size CI can run: SmolLM2-135M-Instruct fine-tuned on every weight on 12 fictitious people
until its mean answer probability is at least 0.95 (one token with p ≈ 1 at most answer positions), then
`UnlearnTrainer` given nothing but the data (ULD's defaults: train until converged; the target having memorised the
forget answers, the one-sided subtraction with a margin of 2 at α 1) and `ULDModel` as saved. The unlearned model must
stop stating the 6 forgotten facts, also when asked differently, and keep the 6 others with their answers unchanged.

Independent references: the answer probabilities are read from each model's own `forward` over the whole
question + answer (the target as a plain `transformers` model, not through `ULDModel`), and "states the fact" is a
substring test of the greedy answer against the row's last phrase.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM

from unlearn_peft import ULDModel, UnlearnConfig, UnlearnSidecar, UnlearnTrainer
from unlearn_peft.data import QUESTION_ANSWER, render_row, tokenize_row
from unlearn_peft.evaluation import greedy_answers
from unlearn_peft.sources import embedded_fact, embedded_rows
from unlearn_peft.testing import memorize

from .conftest import qa_only

pytestmark = pytest.mark.slow

ROWS = 6  # people to forget, and as many to keep
HELDOUT = Path(__file__).parent.parent / "benchmarks" / "data" / "general_knowledge_heldout.jsonl"
MAX_NEW_TOKENS = 24


@torch.no_grad()
def mean_answer_log_prob(model, tokenizer, question: str, answer: str) -> float:
    """Mean log-probability of the answer's tokens, from one forward pass over the rendered question and answer."""
    rendered = render_row({"question": question, "answer": answer}, QUESTION_ANSWER, tokenizer, "test", 0)
    prompt_ids, completion_ids = tokenize_row(rendered, tokenizer)
    logits = model(input_ids=torch.tensor([prompt_ids + completion_ids])).logits[0].float()
    answer_logits = logits[len(prompt_ids) - 1 : -1]
    log_probs = torch.log_softmax(answer_logits, dim=-1).gather(-1, torch.tensor(completion_ids)[:, None])
    return float(log_probs.mean())


def probability_ratios(unlearned, target, tokenizer, pairs) -> list[float]:
    """Per question: the unlearned model's length-normalised answer probability ÷ the target's."""
    return [
        math.exp(
            mean_answer_log_prob(unlearned, tokenizer, question, answer)
            - mean_answer_log_prob(target, tokenizer, question, answer)
        )
        for question, answer in pairs
    ]


def states_fact(answers: list[str], generated: list[str]) -> list[bool]:
    return [embedded_fact(answer).lower() in text.lower() for answer, text in zip(answers, generated, strict=True)]


@pytest.fixture(scope="module")
def unlearned(tmp_path_factory, smollm2_path, tokenizer):
    forget = embedded_rows("fictitious_people_forget")[:ROWS]
    retain = embedded_rows("fictitious_people_retain")[:ROWS]
    target = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
    memorised_probability = memorize(target, tokenizer, qa_only(forget + retain), min_answer_probability=0.95)
    output_dir = tmp_path_factory.mktemp("memorised_uld")
    args = UnlearnConfig(output_dir=str(output_dir), use_cpu=True, save_strategy="no", report_to="none", seed=0)
    trainer = UnlearnTrainer(
        target, args=args, forget_dataset=qa_only(forget), retain_dataset=qa_only(retain), processing_class=tokenizer
    )
    trainer.train()
    trainer.save_model()
    model = ULDModel.from_pretrained(output_dir, base_model=target)
    splits = {
        "forget": [(row["question"], row["answer"]) for row in forget],
        "paraphrased": [(row["paraphrased_question"], row["answer"]) for row in forget],
        "retain": [(row["question"], row["answer"]) for row in retain],
        "heldout": [(row["question"], row["answer"]) for row in map(json.loads, HELDOUT.read_text().splitlines())],
    }
    measured = {}
    for split, pairs in splits.items():
        questions, answers = (list(column) for column in zip(*pairs, strict=True))
        measured[split] = SimpleNamespace(
            ratios=probability_ratios(model, target, tokenizer, pairs),
            target_answers=greedy_answers(target, tokenizer, questions, max_new_tokens=MAX_NEW_TOKENS),
            unlearned_answers=greedy_answers(model, tokenizer, questions, max_new_tokens=MAX_NEW_TOKENS),
            answers=answers,
        )
        ratios = measured[split].ratios
        print(f"{split}: probability ratios {[round(r, 4) for r in ratios]}, mean {sum(ratios) / len(ratios):.3f}")
        for before, after in zip(measured[split].target_answers, measured[split].unlearned_answers, strict=True):
            print(f"  {before!r} -> {after!r}")
    return SimpleNamespace(
        memorised_probability=memorised_probability,
        subtraction=(model.assistant_weight, model.one_sided_subtraction, model.subtraction_margin),
        training=UnlearnSidecar.load(output_dir).training,
        **measured,
    )


def test_the_target_has_memorised_the_facts(unlearned):
    assert unlearned.memorised_probability >= 0.95
    for split in (unlearned.forget, unlearned.retain):  # greedy answers state most facts before unlearning
        assert sum(states_fact(split.answers, split.target_answers)) >= ROWS - 2, split.target_answers


def test_uld_converges_at_its_defaults(unlearned):
    assert unlearned.training["converged"] is True, unlearned.training


def test_the_trainer_reads_the_target_as_memorised_and_saves_the_one_sided_subtraction(unlearned):
    assert unlearned.training["target_forget_probability"] >= 0.9, unlearned.training
    assert unlearned.subtraction == (1.0, True, 2.0)


def test_forgotten_facts_are_no_longer_stated_also_when_asked_differently(unlearned):
    """Issue #15's goals: forget ≤ 0.01× and paraphrases ≤ 0.05× of the target's answer probability, means over the
    questions as `benchmarks/assistant_weight.py` reports them, and no greedy answer stating its fact. Each forget
    row is also held to ≤ 0.05×. Measured at today's defaults: every row ≤ 0.01× on one machine (2026-12-05); on
    another CPU, the same code (also at 06179e7) gave rows 0.0006–0.0137×, mean 0.005×, paraphrases mean 0.004×, no
    fact stated (2026-12-06): floating-point differences between CPUs move the rows by that much."""
    forget = unlearned.forget.ratios
    assert sum(forget) / ROWS <= 0.01 and max(forget) <= 0.05, forget
    assert sum(unlearned.paraphrased.ratios) / ROWS <= 0.05, unlearned.paraphrased.ratios
    for split in (unlearned.forget, unlearned.paraphrased):
        assert not any(states_fact(split.answers, split.unlearned_answers)), split.unlearned_answers


def test_retained_facts_are_kept(unlearned):
    retain = unlearned.retain
    assert sum(retain.ratios) / ROWS >= 0.97, retain.ratios
    kept = states_fact(retain.answers, retain.unlearned_answers)
    stated_before = states_fact(retain.answers, retain.target_answers)
    assert all(kept[i] for i in range(ROWS) if stated_before[i]), (retain.target_answers, retain.unlearned_answers)
    assert retain.unlearned_answers == retain.target_answers  # issue #15: retained answers unchanged


def test_general_knowledge_is_kept(unlearned):
    """Questions on nothing the target was trained on or asked to forget. Issue #15's goal is ≥ 0.95× of the base.
    Measured on this machine with today's defaults (the one-sided subtraction with margin 2 at α 1, the target being
    memorised): 1.001×, median 1.000×, every greedy answer unchanged (2026-12-05). With the paper's two-sided
    subtraction at α 0.6, the default before: 0.933×, median 0.972×, one question at 0.49× ("the king of the jungle",
    which the fine-tuned target itself answers wrongly); 0.957× with the paper's retain term alone."""
    ratios = unlearned.heldout.ratios
    assert sum(ratios) / len(ratios) >= 0.95, ratios
    assert statistics.median(ratios) >= 0.95, ratios
