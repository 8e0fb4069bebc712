"""Model cards of unlearning adapters, rendered from the Jinja templates in `hub_cards/`.

The card says what was unlearned (dataset names and sizes, never contents), how (method and hyperparameters from
the sidecar and `adapter_config.json`), how well (an attached evaluation JSON, also as `model-index` metadata), how
to load the adapter in one line, and its limits.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from peft.utils import CONFIG_NAME

from .embedded import embedded_source
from .evaluation.results import TOFU_RESULTS_SCHEMA, read_results
from .methods import get_method
from .sidecar import UnlearnSidecar
from .sources import EMBEDDED_PREFIX

logger = logging.getLogger(__name__)

ULD_TEMPLATE = "uld_adapter.md"
BASELINE_TEMPLATE = "baseline_adapter.md"


def is_hub_id(name: str | None) -> bool:
    """A Hub repo id (`owner/name` or `name`) rather than a local path or an `embedded:` name."""
    if not name or name.startswith(("/", ".", "~", "embedded:")) or os.path.exists(name):
        return False
    return name.count("/") <= 1 and " " not in name and "\\" not in name


def published_base_model(name_or_path: str | None) -> tuple[str | None, str]:
    """`(Hub id or None, note for the card)` of the base an adapter records.

    A Hub id is kept; a checkpoint converted from the embedded offline model gives that model's Hub id (with a note
    that the weights were a dequantized copy); any other local path gives `None` and a note on how to publish.
    """
    source = embedded_source(name_or_path)
    if source is not None:
        return source["hub_id"], (
            f"Trained on the offline copy of {source['hub_id']} that unlearn-peft embeds "
            f"({source['converted_from']}); its architecture matches the Hub model, its weights differ by the "
            "quantization."
        )
    if is_hub_id(name_or_path):
        return name_or_path, ""
    if not name_or_path:
        return None, (
            "The adapter records no base model (it was trained on a model built in memory); pass "
            "`base_model='org/name'` when publishing, and `base_model=` to `from_pretrained` when loading."
        )
    return None, (
        f"The base was loaded from a local path (`{name_or_path}`), so this card cannot link it; pass "
        "`base_model='org/name'` to `push_adapter` / `push_to_hub` when publishing, and "
        "`base_model=` to `from_pretrained` when loading."
    )


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return "–" if value is None else str(value)


def load_evaluation(evaluation: str | os.PathLike[str] | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Read an evaluation JSON written by `unlearn-peft eval` (TOFU or MUSE), or pass a dict through."""
    return None if evaluation is None else read_results(evaluation)


def evaluation_metrics(evaluation: Mapping[str, Any]) -> list[tuple[str, str, float]]:
    """`(benchmark, metric, value)` rows of an evaluation: the headline numbers, then each split's."""
    rows: list[tuple[str, str, float]] = []
    if evaluation["schema"] == TOFU_RESULTS_SCHEMA:
        for key in ("forget_quality", "model_utility"):
            if key in evaluation:
                rows.append(("TOFU", key, float(evaluation[key])))
        for split, values in evaluation["splits"].items():
            for metric in ("probability", "rouge", "truth_ratio"):
                rows.append(("TOFU", f"{split}_{metric}", float(values[metric])))
    else:
        for key, value in evaluation.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "schema":
                rows.append(("MUSE", key, float(value)))
    return [row for row in rows if not math.isnan(row[2])]


def _eval_results(evaluation: Mapping[str, Any]) -> list[EvalResult]:
    dataset = ("locuslab/TOFU", "TOFU") if evaluation["schema"] == TOFU_RESULTS_SCHEMA else ("muse-bench/MUSE", "MUSE")
    return [
        EvalResult(
            task_type="text-generation",
            dataset_type=dataset[0],
            dataset_name=dataset[1],
            metric_type=metric,
            metric_name=metric.replace("_", " "),
            metric_value=round(value, 6),
        )
        for _, metric, value in evaluation_metrics(evaluation)
    ]


def _uld_retain_loss(training: Mapping[str, Any]) -> str:
    """The paper's term, plus the plausible-set term when it trained (sidecars before it have no such entry)."""
    weight = training.get("plausible_retain_loss_weight") or 0
    extra = f" + {_format(weight)} · KL(uniform on the target's plausible tokens ‖ assistant)" if weight else ""
    return "KL(uniform ‖ assistant)" + extra


def _target_reading(training: Mapping[str, Any]) -> str:
    """What decided the subtraction's settings left unset (sidecars before it have no such entry)."""
    probability, threshold = training["target_forget_probability"], training.get("memorised_forget_probability")
    if probability is None:
        return "not read (only the assistant's layers were loaded): treated as not memorised"
    memorised = threshold is not None and probability >= threshold
    return f"{probability:.3f} ({'memorised' if memorised else 'not memorised'}: threshold {_format(threshold)})"


def _hyperparameters(sidecar: UnlearnSidecar, adapter_config: Mapping[str, Any]) -> list[tuple[str, str]]:
    training = sidecar.training
    num_layers = sidecar.base_model_fingerprint.get("num_hidden_layers")
    epochs, steps = _format(training.get("epochs_run", training.get("num_train_epochs"))), training.get("global_step")
    method = get_method(sidecar.method)
    rows = [("method", method.title)]
    if method.trains_assistant:
        rows += [
            ("assistant layers K", f"{sidecar.assistant_num_layers} of {num_layers}"),
            ("assistant weight α", _format(sidecar.assistant_weight)),
            ("plausibility threshold τ", _format(sidecar.plausibility_threshold)),
            ("plausible-set floor (min_tokens_to_keep)", _format(sidecar.min_tokens_to_keep)),
            ("weighted by the assistant's mass on the plausible set", _format(sidecar.weight_by_assistant_mass)),
            ("one-sided subtraction (the assistant only lowers tokens)", _format(sidecar.one_sided_subtraction)),
            ("margin of the one-sided subtraction (nats)", _format(sidecar.subtraction_margin)),
            ("tokens never subtracted (ids)", _format(sidecar.exempt_token_ids or "none")),
            ("retain loss", _uld_retain_loss(training)),
        ]
        if "target_forget_probability" in training:
            rows.append(("target's answer probability on the forget rows", _target_reading(training)))
        if "converged" in training:
            rows.append(("assistant converged", _convergence(training)))
    else:
        rows += [("retain loss", _format(training.get("retain_loss"))), ("β", _format(training.get("beta")))]
    rows += [
        (
            "forget / retain loss weights",
            f"{_format(training.get('forget_loss_weight'))} / {_format(training.get('retain_loss_weight'))}",
        ),
        (
            "LoRA r / alpha / dropout",
            f"{adapter_config.get('r')} / {adapter_config.get('lora_alpha')} / {adapter_config.get('lora_dropout')}",
        ),
        ("LoRA target modules", _format(sorted(adapter_config.get("target_modules") or []))),
        ("learning rate", _format(training.get("learning_rate"))),
        ("epochs / optimiser steps run", f"{epochs} / {_format(steps)}"),
        ("max length", _format(training.get("max_length"))),
    ]
    return rows


def _dataset_display(name: str | None) -> str | None:
    if name and name.startswith(EMBEDDED_PREFIX):
        return f"`{name}` (bundled with unlearn-peft)"
    return f"`{name}`" if name else None


def _convergence(training: Mapping[str, Any]) -> str:
    verdict = "yes" if training["converged"] else "**no** (stopped at the step budget)"
    return (
        f"{verdict}: forget NLL {_format(training.get('final_loss_forget'))} (≤ "
        f"{_format(training.get('converged_forget_nll'))}), retain KL {_format(training.get('final_loss_retain'))} "
        f"(≤ {_format(training.get('converged_retain_kl'))}) after {training.get('steps')} of at most "
        f"{training.get('step_budget')} steps"
    )


def render_model_card(
    adapter_dir: str | os.PathLike[str],
    *,
    repo_id: str,
    base_model: str | None = None,
    evaluation: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    datasets: Sequence[str] | None = None,
) -> ModelCard:
    """Render the card of the adapter in `adapter_dir` (ULD or baseline template, chosen by the sidecar's method).

    Args:
        adapter_dir: directory with `adapter_config.json` and `unlearn_sidecar.json`.
        repo_id: the Hub repository the card is for (used in the loading snippet).
        base_model: Hub id of the base model. Defaults to the sidecar's, when that is a Hub id (a local path is never
            written into the metadata).
        evaluation: an evaluation JSON (path or dict) written by `unlearn-peft eval`; adds the results table and the
            `model-index` metadata.
        datasets: Hub ids of the forget / retain datasets, for the `datasets` metadata. Defaults to those recorded
            in the sidecar.
    """
    directory = Path(adapter_dir)
    sidecar = UnlearnSidecar.load(directory)
    adapter_config = json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8"))
    training = sidecar.training
    recorded_base = base_model or sidecar.base_model_name_or_path
    base_model, base_model_note = published_base_model(recorded_base)
    if base_model is None:
        logger.info(
            "The base model %r is not a Hub id; the card leaves base_model out. Pass base_model='org/name'.",
            recorded_base,
        )
    dataset_names = (
        list(datasets)
        if datasets is not None
        else [name for name in (training.get("forget_dataset"), training.get("retain_dataset")) if name]
    )
    hub_datasets = sorted(
        {
            name.split(":")[0]
            for name in dataset_names
            if not name.startswith(EMBEDDED_PREFIX) and is_hub_id(name.split(":")[0])
        }
    )
    results = load_evaluation(evaluation)
    method = get_method(sidecar.method)
    is_uld = method.trains_assistant
    method_title = method.card_title(training.get("retain_loss"))
    card_data = ModelCardData(
        base_model=base_model,
        library_name="unlearn-peft" if is_uld else "peft",
        tags=["unlearning", sidecar.method, "lora", "unlearn-peft"] + ([] if is_uld else ["peft"]),
        datasets=hub_datasets or None,
        pipeline_tag="text-generation",
        model_name=repo_id.split("/")[-1],
        eval_results=_eval_results(results) if results else None,
    )
    metrics = evaluation_metrics(results) if results else []
    template = resources.files("unlearn_peft.hub_cards").joinpath(ULD_TEMPLATE if is_uld else BASELINE_TEMPLATE)
    return ModelCard.from_template(
        card_data,
        template_str=template.read_text(encoding="utf-8"),
        repo_id=repo_id,
        model_name=repo_id.split("/")[-1],
        base_model_display=base_model or ("a local base model" if recorded_base else "its base model"),
        base_model_url=f"https://huggingface.co/{base_model}" if base_model else "",
        base_model_note=base_model_note,
        method_title=method_title,
        method_description=method.description,
        citation=method.citation,
        assistant_num_layers=sidecar.assistant_num_layers,
        base_num_layers=sidecar.base_model_fingerprint.get("num_hidden_layers"),
        assistant_weight=_format(sidecar.assistant_weight),
        plausibility_threshold=_format(sidecar.plausibility_threshold),
        forget_dataset=_dataset_display(training.get("forget_dataset")) or "not recorded",
        retain_dataset=_dataset_display(training.get("retain_dataset"))
        or ("not recorded" if training.get("retain_rows") else "none"),
        forget_rows=_format(training.get("forget_rows")),
        forget_examples=_format(training.get("forget_examples")),
        retain_rows=_format(training.get("retain_rows")),
        retain_examples=_format(training.get("retain_examples")),
        hyperparameters=_hyperparameters(sidecar, adapter_config),
        results=[(f"{benchmark} {metric}", f"{value:.4f}") for benchmark, metric, value in metrics],
        results_source=f"Evaluation of `{results.get('model_name')}` with `unlearn-peft eval`." if results else "",
        has_forget_quality=any(metric == "forget_quality" for _, metric, _ in metrics),
        library_version=sidecar.library_version,
    )
