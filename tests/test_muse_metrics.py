"""MUSE metrics: Min-K% by hand, AUC and PrivLeak on counted cases, VerbMem/KnowMem through a scripted model and a
tiny Llama, `evaluate_muse` refusals, and SmolLM2 end to end."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from unlearn_peft.evaluation import (
    MUSE_RESULTS_SCHEMA,
    auc_member_vs_nonmember,
    evaluate_muse,
    knowmem,
    knowmem_answer,
    knowmem_prompt,
    load_muse_results,
    min_k_percent_score,
    privleak,
    rouge_l_f1,
    verbmem,
)

FORGET_TEXTS = ["Alice keeps a red kite in the attic.", "The ferry leaves the harbour at noon."]
HOLDOUT_TEXTS = ["Bob paints blue fences on Sundays.", "The train to the coast is late again."]


class ScriptedModel(torch.nn.Module):
    """A stand-in causal LM whose greedy continuation of each prompt is scripted; it records what it was given."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, continuation: Callable[[str], str]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))  # gives the evaluation a device to read
        self.tokenizer = tokenizer
        self.continuation = continuation
        self.calls: list[dict] = []

    def generate(self, input_ids, attention_mask, max_new_tokens, do_sample, pad_token_id):
        assert do_sample is False
        self.calls.append({"input_ids": input_ids.tolist(), "attention_mask": attention_mask.tolist()})
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            prompt = self.tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])
            new = self.tokenizer(self.continuation(prompt), add_special_tokens=False)["input_ids"][:max_new_tokens]
            rows.append(ids + new + [pad_token_id] * (max_new_tokens - len(new)))
        return torch.tensor(rows)


# ------------------------------------------------------------------------------------------------- Min-K% Prob


def test_min_k_percent_equals_hand_computation_from_logits(make_tiny_llama, tokenizer):
    model = make_tiny_llama()
    text = "The quick brown fox jumps over the dog"
    token_ids = tokenizer(text)["input_ids"]
    assert len(token_ids) == 8  # SmolLM2 adds no BOS: 7 tokens after the first are scored
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([token_ids])).logits[0].double()
    log_probs = []
    for position in range(1, len(token_ids)):
        row = logits[position - 1]
        log_probs.append(float(row[token_ids[position]] - torch.logsumexp(row, dim=0)))
    lowest_first = sorted(log_probs)
    # k = 0.4: ⌊0.4 · 7⌋ = 2 tokens (ceil would keep 3).
    assert min_k_percent_score(model, tokenizer, text, k=0.4) == pytest.approx(sum(lowest_first[:2]) / 2, abs=1e-5)
    assert min_k_percent_score(model, tokenizer, text, k=1.0) == pytest.approx(sum(log_probs) / 7, abs=1e-5)
    # ⌊0.1 · 7⌋ = 0 would average nothing: one token, the least likely, is kept.
    assert min_k_percent_score(model, tokenizer, text, k=0.1) == pytest.approx(lowest_first[0], abs=1e-5)
    assert lowest_first[0] < sum(lowest_first[:2]) / 2 < sum(lowest_first[:3]) / 3 < 0


def test_min_k_percent_restores_training_mode_and_refuses_bad_inputs(make_tiny_llama, tokenizer):
    model = make_tiny_llama().train()
    min_k_percent_score(model, tokenizer, "Some words to score.")
    assert model.training
    with pytest.raises(ValueError, match=r"k in \(0, 1\]"):
        min_k_percent_score(model, tokenizer, "Some words.", k=0)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        min_k_percent_score(model, tokenizer, "The")


# ---------------------------------------------------------------------------------------------- AUC, PrivLeak


def test_auc_on_hand_counted_cases():
    assert auc_member_vs_nonmember([3.0, 4.0, 5.0], [0.0, 1.0, 2.0]) == 1.0
    assert auc_member_vs_nonmember([0.0, 1.0, 2.0], [3.0, 4.0, 5.0]) == 0.0
    assert auc_member_vs_nonmember([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]) == 0.5
    # One member (2.5) below one non-member (3): 8 of 9 pairs ordered.
    assert auc_member_vs_nonmember([2.5, 4.0, 5.0], [0.0, 1.0, 3.0]) == pytest.approx(8 / 9)
    # Pairs of (1, 2) vs (1, 0): tie ½, then 1 > 0, 2 > 1, 2 > 0 — 3.5 of 4.
    assert auc_member_vs_nonmember([1.0, 2.0], [1.0, 0.0]) == pytest.approx(3.5 / 4)
    assert auc_member_vs_nonmember([-5.7], [-10.2, -7.8]) == 1.0
    with pytest.raises(ValueError, match="at least one score in nonmember_scores"):
        auc_member_vs_nonmember([1.0], [])
    with pytest.raises(ValueError, match="finite"):
        auc_member_vs_nonmember([math.nan], [1.0])


def test_privleak_formula():
    assert privleak(0.6, 0.5) == pytest.approx(20.0)
    assert privleak(0.0, 0.4772) == pytest.approx(-100.0)
    assert privleak(0.5, 0.5) == 0.0
    assert privleak(0.25, 0.5) == pytest.approx(-50.0)
    with pytest.raises(ValueError, match="must be > 0"):
        privleak(0.3, 0.0)


# ----------------------------------------------------------------------------------------- VerbMem, KnowMem


def test_knowmem_prompt_and_answer_cutting_follow_muse():
    assert knowmem_prompt("Who wrote Hamlet?") == "Question: Who wrote Hamlet?\nAnswer:"
    assert knowmem_prompt("Q3?", [("Q1?", "A1"), ("Q2?", "A2")]) == (
        "Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\nQuestion: Q3?\nAnswer:"
    )
    assert knowmem_answer(" Paris\n\nQuestion: What is") == "Paris"
    assert knowmem_answer(" Paris\nQuestion: What is") == "Paris"
    assert knowmem_answer(" Paris. Question: What is") == "Paris."
    assert knowmem_answer(" Paris\nand Lyon") == "Paris\nand Lyon"  # MUSE cuts at a blank line, not at one newline


def test_verbmem_scores_the_truth_truncated_to_the_generated_length(tokenizer):
    truths = {"Once upon a time": " there lived a king who had three daughters and a golden apple tree"}
    model = ScriptedModel(tokenizer, lambda prompt: truths.get(prompt, " nothing at all"))
    scores = verbmem(model, tokenizer, ["Once upon a time", "Far away"], [truths["Once upon a time"], " a castle"], 6)
    echoed, wrong = scores.per_item
    # The model reproduces the first 6 tokens of the truth; the truth is cut to the same 6 tokens, so F1 = 1.
    assert echoed["ground_truth"] == tokenizer.decode(tokenizer(truths["Once upon a time"])["input_ids"][:6])
    assert echoed["generation"] == echoed["ground_truth"] and echoed["rouge_l_f1"] == 1.0
    assert wrong["generation"] == " nothing at all" and wrong["rouge_l_f1"] == 0.0
    assert scores.mean_rouge_l_f1 == 0.5
    # One left-padded batch of raw prompts: no chat template, padding on the left only.
    (call,) = model.calls
    long, short = call["attention_mask"]
    assert all(long) and 0 in short and short == sorted(short)  # zeros, then ones
    assert call["input_ids"][1][0] == tokenizer.pad_token_id
    with pytest.raises(ValueError, match=r"MUSE verbmem row 1: column 'gt' is empty"):
        verbmem(model, tokenizer, ["a", "b"], ["c", " "])
    with pytest.raises(ValueError, match="2 prompts but 1 ground truths"):
        verbmem(model, tokenizer, ["a", "b"], ["c"])


def test_knowmem_cuts_and_scores_the_generation(tokenizer):
    answers = {"What is the capital of France?": " Paris\n\nQuestion: What is the capital of Spain?"}
    model = ScriptedModel(tokenizer, lambda prompt: answers.get(prompt.split("\n\n")[-1][10:-8], " I think Rome"))
    few_shot = [("What is the capital of Italy?", "Rome")]
    scores = knowmem(model, tokenizer, list(answers) + ["Who painted it?"], ["Paris", "Leonardo"], few_shot)
    assert [item["generation"] for item in scores.per_item] == ["Paris", "I think Rome"]
    assert [item["rouge_l_f1"] for item in scores.per_item] == [1.0, 0.0]
    prompt_ids = model.calls[0]["input_ids"][0]
    assert tokenizer.decode(prompt_ids) == knowmem_prompt("What is the capital of France?", few_shot)
    with pytest.raises(ValueError, match=r"MUSE knowmem few-shot row 0: column 'answer' is empty"):
        knowmem(model, tokenizer, ["q"], ["a"], [("q", "")])


def test_tiny_llama_pipeline_end_to_end(make_tiny_llama, tokenizer, tmp_path):
    model = make_tiny_llama()
    verbmem_rows = [
        {"prompt": "Alice keeps a red kite", "gt": " in the attic of her old house."},
        {"prompt": "The ferry", "gt": " leaves at noon."},
    ]
    knowmem_rows = [
        {"question": "Where is the kite?", "answer": "In the attic"},
        {"question": "When?", "answer": "Noon"},
    ]
    results = evaluate_muse(
        model,
        tokenizer,
        verbmem_rows=verbmem_rows,
        knowmem_rows=knowmem_rows,
        knowmem_few_shot=[{"question": "Who keeps it?", "answer": "Alice"}],
        knowmem_retain_rows=[{"question": "What does Bob paint?", "answer": "Fences"}],
        forget_texts=FORGET_TEXTS,
        holdout_texts=HOLDOUT_TEXTS,
        model_name="tiny",
        verbmem_max_new_tokens=5,
        knowmem_max_new_tokens=4,
        batch_size=2,
    )
    assert results["schema"] == MUSE_RESULTS_SCHEMA and results["model_name"] == "tiny"
    # Batched, left-padded generation equals each prompt generated alone.
    for row, item in zip(verbmem_rows, results["verbmem"]["per_item"], strict=True):
        input_ids = tokenizer(row["prompt"], return_tensors="pt")["input_ids"]
        alone = model.generate(input_ids, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert item["generation"] == tokenizer.decode(alone[0, input_ids.shape[1] :], skip_special_tokens=True)
        assert item["rouge_l_f1"] == rouge_l_f1(item["generation"], item["ground_truth"])
    for item in results["knowmem"]["per_item"]:
        assert item["rouge_l_f1"] == rouge_l_f1(item["generation"], item["answer"])
    assert results["knowmem"]["few_shot"] == [["Who keeps it?", "Alice"]]
    (retain_item,) = results["knowmem_retain"]["per_item"]
    assert results["knowmem_retain"]["few_shot"] == [] and results["knowmem_r"] == retain_item["rouge_l_f1"]
    assert results["verbmem_f"] == pytest.approx(sum(i["rouge_l_f1"] for i in results["verbmem"]["per_item"]) / 2)
    assert results["knowmem_f"] == pytest.approx(sum(i["rouge_l_f1"] for i in results["knowmem"]["per_item"]) / 2)
    membership = results["membership"]
    assert membership["k"] == 0.4 and [item["text"] for item in membership["forget"]] == FORGET_TEXTS
    assert membership["forget"][1]["min_k_percent"] == pytest.approx(
        min_k_percent_score(model, tokenizer, FORGET_TEXTS[1])
    )
    holdout_scores = [item["min_k_percent"] for item in membership["holdout"]]
    forget_scores = [item["min_k_percent"] for item in membership["forget"]]
    assert results["auc"] == auc_member_vs_nonmember(holdout_scores, forget_scores)  # MUSE: holdout is "member"
    assert "privleak" not in results
    # The JSON written to disk is a valid retrain evaluation for a model on the same texts.
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(results), encoding="utf-8")
    assert load_muse_results(path) == results
    other = make_tiny_llama(seed=1)
    unlearned = evaluate_muse(
        other, tokenizer, forget_texts=FORGET_TEXTS, holdout_texts=HOLDOUT_TEXTS, retrain_results=path
    )
    assert set(unlearned) == {"schema", "model_name", "membership", "auc", "privleak"}
    assert unlearned["privleak"] == pytest.approx(privleak(unlearned["auc"], results["auc"]))


def test_evaluate_muse_refuses_incomparable_retrain_and_bad_rows(make_tiny_llama, tokenizer):
    model = make_tiny_llama(num_layers=1)
    retrain = evaluate_muse(model, tokenizer, forget_texts=FORGET_TEXTS, holdout_texts=HOLDOUT_TEXTS, model_name="re")
    with pytest.raises(ValueError, match=r"other forget texts \(2 texts\) than this model \(1\)"):
        evaluate_muse(
            model, tokenizer, forget_texts=FORGET_TEXTS[:1], holdout_texts=HOLDOUT_TEXTS, retrain_results=retrain
        )
    with pytest.raises(ValueError, match="other holdout texts"):
        evaluate_muse(
            model, tokenizer, forget_texts=FORGET_TEXTS, holdout_texts=HOLDOUT_TEXTS[::-1], retrain_results=retrain
        )
    with pytest.raises(ValueError, match=r"k=0.4, this model with k=0.2"):
        evaluate_muse(
            model,
            tokenizer,
            forget_texts=FORGET_TEXTS,
            holdout_texts=HOLDOUT_TEXTS,
            retrain_results=retrain,
            min_k_fraction=0.2,
        )
    with pytest.raises(ValueError, match=r"retrain evaluation \('re'\) has no membership scores"):
        retrain_without_texts = {key: value for key, value in retrain.items() if key not in ("membership", "auc")}
        evaluate_muse(
            model,
            tokenizer,
            forget_texts=FORGET_TEXTS,
            holdout_texts=HOLDOUT_TEXTS,
            retrain_results=retrain_without_texts,
        )
    with pytest.raises(ValueError, match="has AUC 0"):
        perfectly_separating = json.loads(json.dumps(retrain))
        for item in perfectly_separating["membership"]["forget"]:
            item["min_k_percent"] = 0.0
        evaluate_muse(
            model,
            tokenizer,
            forget_texts=FORGET_TEXTS,
            holdout_texts=HOLDOUT_TEXTS,
            retrain_results=perfectly_separating,
        )
    with pytest.raises(ValueError, match="Not an unlearn-peft MUSE evaluation"):
        load_muse_results({"schema": "unlearn-peft/tofu-eval/1"})
    with pytest.raises(
        ValueError, match=r"MUSE verbmem row 1: column 'gt' must be a string, got NoneType: the row has no 'gt' value"
    ):
        evaluate_muse(model, tokenizer, verbmem_rows=[{"prompt": "a", "gt": "b"}, {"prompt": "c"}])
    with pytest.raises(ValueError, match=r"MUSE knowmem row 0: column 'question' is empty"):
        evaluate_muse(model, tokenizer, knowmem_rows=[{"question": "", "answer": "b"}])
    with pytest.raises(ValueError, match=r"MUSE privleak holdout row 1: column 'text' is empty"):
        evaluate_muse(model, tokenizer, forget_texts=FORGET_TEXTS, holdout_texts=["fine text", ""])
    with pytest.raises(ValueError, match="needs both forget_texts and holdout_texts"):
        evaluate_muse(model, tokenizer, forget_texts=FORGET_TEXTS)
    with pytest.raises(ValueError, match="Nothing to evaluate"):
        evaluate_muse(model, tokenizer)


# ------------------------------------------------------------------------------------------------ real model


@pytest.mark.slow
def test_muse_on_smollm2(smollm2_path, tokenizer, tmp_path):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
    results = evaluate_muse(
        model,
        tokenizer,
        verbmem_rows=[
            {"prompt": "To be, or not to be, that is", "gt": " the question: Whether 'tis nobler in the mind"}
        ],
        knowmem_rows=[
            {"question": "What is the capital of France?", "answer": "Paris"},
            {"question": "Who wrote Romeo and Juliet?", "answer": "William Shakespeare"},
        ],
        knowmem_few_shot=[("What is the capital of Italy?", "Rome")],
        # Text the model has surely seen vs random characters it cannot have: forget texts look like members.
        forget_texts=["To be, or not to be, that is the question.", "The capital of France is Paris."],
        holdout_texts=["Qx7 zv!Pl kw93 bR#t Lmq oo8 Yf.", "jK4 ;wq zZp 0r tUv& hhX 9cN e"],
        model_name="smollm2-135m",
        verbmem_max_new_tokens=8,
        knowmem_max_new_tokens=8,
    )
    (quote,) = results["verbmem"]["per_item"]
    assert quote["generation"].startswith(" the question")
    assert 0 < results["verbmem_f"] <= 1 and results["verbmem_f"] == quote["rouge_l_f1"]
    # Short answers it knows, cut before the next few-shot block.
    assert [item["generation"] for item in results["knowmem"]["per_item"]] == ["Paris", "William Shakespeare"]
    assert results["knowmem_f"] == 1.0
    forget = [item["min_k_percent"] for item in results["membership"]["forget"]]
    holdout = [item["min_k_percent"] for item in results["membership"]["holdout"]]
    assert min(forget) > max(holdout)
    # MUSE's orientation: a model that knows the forget texts gets AUC 0 (holdout never looks more like a member).
    assert results["auc"] == 0.0
    path = tmp_path / "smollm2.json"
    path.write_text(json.dumps(results, indent=2), encoding="utf-8")
    assert load_muse_results(path) == results
