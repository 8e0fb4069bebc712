"""The TOFU evaluation end to end: tiny-model checks of structure and refusals, and SmolLM2 with three model kinds."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from unlearn_peft import ULDModel, UnlearnConfig, UnlearnTrainer
from unlearn_peft.evaluation import evaluate_muse, evaluate_tofu, load_results, summary_markdown, write_tofu_report

from .conftest import FIXTURES, qa_only, read_jsonl


@pytest.fixture(scope="module")
def tofu_splits(tofu_forget, tofu_retain):
    return {
        "forget": tofu_forget[:3],
        "retain": tofu_retain[:3],
        "real_authors": read_jsonl(FIXTURES / "tofu" / "real_authors_perturbed_head4.json")[:3],
        "world_facts": read_jsonl(FIXTURES / "tofu" / "world_facts_perturbed_head4.json")[:3],
    }


def test_tiny_model_evaluation_structure_and_refusals(make_tiny_llama, tokenizer, tofu_splits):
    model = make_tiny_llama()
    results = evaluate_tofu(model, tokenizer, tofu_splits, model_name="tiny", max_new_tokens=4)
    assert set(results["splits"]) == set(tofu_splits)
    forget = results["splits"]["forget"]
    assert forget["num_questions"] == 3 and len(forget["per_question"]) == 3
    assert all(0 < q["probability"] < 1 and q["truth_ratio"] > 0 for q in forget["per_question"])
    ratios = [q["truth_ratio"] for q in forget["per_question"]]
    assert forget["truth_ratio"] == pytest.approx(sum(min(r, 1 / r) for r in ratios) / 3)
    assert 0 <= results["model_utility"] <= 1
    # The same questions against itself: identical truth ratios, KS p-value 1.
    assert evaluate_tofu(
        model, tokenizer, {"forget": tofu_splits["forget"]}, retain_model_results=results, max_new_tokens=2
    )["forget_quality"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"other forget questions \(3 questions, from 'tiny'\) than this model \(2\)"):
        evaluate_tofu(
            model, tokenizer, {"forget": tofu_splits["forget"][:2]}, retain_model_results=results, max_new_tokens=2
        )
    with pytest.raises(ValueError, match=r"TOFU split 'forget' row 0: column 'paraphrased_answer' is missing"):
        evaluate_tofu(model, tokenizer, {"forget": qa_only(tofu_splits["forget"])}, max_new_tokens=2)
    with pytest.raises(ValueError, match="Unknown TOFU splits"):
        evaluate_tofu(model, tokenizer, {"holdout": tofu_splits["forget"]})
    with pytest.raises(ValueError, match="Not an unlearn-peft TOFU evaluation"):
        load_results({"schema": "other"})


@pytest.mark.slow
def test_tofu_on_smollm2_for_base_uld_and_peft_baseline(
    tmp_path, smollm2_path, tokenizer, tofu_splits, tofu_forget, tofu_retain
):
    forget, retain = qa_only(tofu_forget[:4]), qa_only(tofu_retain[:4])

    def train(method: str, steps: int):
        model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
        args = UnlearnConfig(
            output_dir=str(tmp_path / method),
            method=method,
            max_steps=steps,
            per_device_train_batch_size=2,
            learning_rate=3e-3 if method == "uld" else 5e-4,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            max_length=128,
        )
        trainer = UnlearnTrainer(
            model, args=args, forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer
        )
        trainer.train()
        trainer.save_model(str(tmp_path / method))
        return model, trainer

    base = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
    # SmolLM2 never saw TOFU's fictitious authors, so the base model is a genuine "retain model" for them.
    retain_results = evaluate_tofu(
        base, tokenizer, tofu_splits, model_name="SmolLM2 (retain model)", max_new_tokens=24
    )
    uld_base, _ = train("uld", 20)
    uld = ULDModel.from_pretrained(tmp_path / "uld", base_model=uld_base)
    _, npo_trainer = train("npo", 4)
    evaluated = [retain_results]
    for name, model in (("ULD", uld), ("NPO+GD (PEFT)", npo_trainer.model)):
        evaluated.append(
            evaluate_tofu(
                model, tokenizer, tofu_splits, model_name=name, max_new_tokens=24, retain_model_results=retain_results
            )
        )
    for results in evaluated[1:]:
        # hmean is 0 as soon as one of the nine numbers is 0, which 3 questions per split can give.
        assert 0 <= results["forget_quality"] <= 1 and 0 <= results["model_utility"] <= 1
        assert results["splits"]["forget"]["probability"] != retain_results["splits"]["forget"]["probability"]
    print(summary_markdown(evaluated))
    written = write_tofu_report(evaluated, tmp_path / "report")
    summary = written["summary"].read_text()
    assert "| ULD |" in summary and "| NPO+GD (PEFT) |" in summary and "forget quality" in summary
    for plot in ("forget_quality_vs_utility", "splits"):
        assert written[plot].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(written["ULD"].read_text())
    assert (
        len(saved["splits"]["retain"]["per_question"]) == 3
        and "generated" in saved["splits"]["retain"]["per_question"][0]
    )
    print(summary)

    # MUSE's evaluation takes the same models unchanged (issue #5).
    muse_inputs = dict(
        verbmem_rows=[{"prompt": row["question"], "gt": row["answer"]} for row in forget[:2]],
        knowmem_rows=[{"question": row["question"], "answer": row["answer"]} for row in forget[:2]],
        forget_texts=[row["answer"] for row in forget[:3]],
        # Short familiar sentences as holdout: some score above the fictitious forget answers, so AUC > 0 (1/3).
        holdout_texts=[
            "The capital of France is Paris.",
            "Water boils at 100 degrees Celsius at sea level.",
            "The Earth orbits the Sun once a year.",
        ],
        verbmem_max_new_tokens=12,
        knowmem_max_new_tokens=8,
    )
    retrain_muse = evaluate_muse(base, tokenizer, model_name="SmolLM2", **muse_inputs)
    assert retrain_muse["auc"] > 0  # PrivLeak divides by it
    for name, model in (("ULD", uld), ("NPO+GD (PEFT)", npo_trainer.model)):
        muse = evaluate_muse(model, tokenizer, model_name=name, retrain_results=retrain_muse, **muse_inputs)
        assert 0 <= muse["verbmem_f"] <= 1 and 0 <= muse["knowmem_f"] <= 1 and 0 <= muse["auc"] <= 1
        assert muse["privleak"] == pytest.approx((muse["auc"] - retrain_muse["auc"]) / retrain_muse["auc"] * 100)
        assert len(muse["verbmem"]["per_item"]) == 2
        json.dumps(muse)
