"""ULD trains until its assistant converged: the tracker's window, early stopping, and what the adapter records."""

import logging

import pytest

from unlearn_peft import UnlearnConfig, UnlearnTrainer
from unlearn_peft.convergence import ConvergenceTracker
from unlearn_peft.model_card import render_model_card
from unlearn_peft.sidecar import UnlearnSidecar

from .conftest import qa_only, tiny_uld_args


def test_one_lucky_batch_is_not_convergence():
    tracker = ConvergenceTracker(forget_nll=0.5, retain_kl=0.5, window=3)
    tracker.update(0.1, 0.1)
    assert not tracker.converged  # the window is not full yet
    tracker.update(2.0, 0.1)
    tracker.update(0.1, 0.1)
    assert tracker.forget_mean == pytest.approx(2.2 / 3) and not tracker.converged
    tracker.update(0.1, 0.1)
    assert not tracker.converged  # the 2.0 is still one of the last 3
    tracker.update(0.1, 0.1)  # now it has left the window: means 0.1 and 0.1
    assert tracker.converged
    tracker.update(0.1, 1.6)  # retain mean (0.1 + 0.1 + 1.6) / 3 = 0.6 > 0.5
    assert not tracker.converged


def test_without_a_retain_set_only_the_forget_term_counts():
    tracker = ConvergenceTracker(forget_nll=0.5, retain_kl=0.5, window=2)
    tracker.update(0.2, None)
    tracker.update(0.3, None)
    assert tracker.converged and tracker.retain_mean is None


def _trainer(tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain, **settings) -> UnlearnTrainer:
    args = tiny_uld_args(tmp_path / "out", max_steps=12, max_length=64, convergence_window=3, **settings)
    return UnlearnTrainer(
        make_tiny_llama(),
        args=args,
        forget_dataset=qa_only(tofu_forget[:4]),
        retain_dataset=qa_only(tofu_retain[:4]),
        processing_class=tokenizer,
    )


def test_training_stops_once_converged_and_the_adapter_records_it(
    tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain
):
    # Thresholds any batch meets: convergence is declared as soon as the window is full.
    trainer = _trainer(
        tmp_path,
        make_tiny_llama,
        tokenizer,
        tofu_forget,
        tofu_retain,
        converged_forget_nll=1e3,
        converged_retain_kl=1e3,
    )
    trainer.train()
    assert trainer.state.global_step == 3  # window of 3 batches, one batch per step; budget was 12
    trainer.save_model(str(tmp_path / "adapter"))
    training = UnlearnSidecar.load(tmp_path / "adapter").training
    assert training["converged"] is True and (training["steps"], training["step_budget"]) == (3, 12)
    assert training["final_loss_forget"] == pytest.approx(trainer.convergence.forget_mean)
    card = render_model_card(tmp_path / "adapter", repo_id="me/uld", base_model="org/base").content
    assert "assistant converged | yes" in card and "after 3 of at most 12 steps" in card


def test_an_unconverged_run_uses_its_budget_and_says_so(
    tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain, caplog
):
    trainer = _trainer(
        tmp_path,
        make_tiny_llama,
        tokenizer,
        tofu_forget,
        tofu_retain,
        converged_forget_nll=1e-9,
        converged_retain_kl=1e-9,
    )
    with caplog.at_level(logging.WARNING, logger="unlearn_peft.trainer"):
        trainer.train()
    assert trainer.state.global_step == 12
    assert any("has NOT converged after 12 of 12 steps" in record.getMessage() for record in caplog.records)
    trainer.save_model(str(tmp_path / "adapter"))
    assert UnlearnSidecar.load(tmp_path / "adapter").training["converged"] is False
    card = render_model_card(tmp_path / "adapter", repo_id="me/uld", base_model="org/base").content
    assert "**no** (stopped at the step budget)" in card


def test_stopping_can_be_turned_off(tmp_path, make_tiny_llama, tokenizer, tofu_forget, tofu_retain):
    trainer = _trainer(
        tmp_path,
        make_tiny_llama,
        tokenizer,
        tofu_forget,
        tofu_retain,
        converged_forget_nll=1e3,
        converged_retain_kl=1e3,
        stop_when_converged=False,
    )
    trainer.train()
    assert trainer.state.global_step == 12 and trainer.convergence_summary["converged"] is True


def test_bad_convergence_settings_are_refused():
    with pytest.raises(ValueError, match="convergence_window=0 must be ≥ 1"):
        UnlearnConfig(output_dir="x", convergence_window=0)
