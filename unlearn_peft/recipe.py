"""Recipes: one YAML file of script, model and [`UnlearnConfig`] arguments, parsed TRL-style, and the run it describes.

A recipe is what `trainers/unlearn.py` and `unlearn-peft train` read (`--config recipe.yaml`, then `--key value`
overrides, as with TRL's `TrlParser`). Its keys are the fields of three dataclasses:

- [`UnlearnScriptArguments`]: the forget and retain datasets;
- `trl.ModelConfig`: the model (`model_name_or_path`, `dtype`, `load_in_4bit`, ...) and, with `use_peft: true`,
  the LoRA settings (`lora_r`, `lora_alpha`, `lora_target_modules`, ...); without it the method's default LoRA;
- [`UnlearnConfig`]: the method and every `TrainingArguments` field.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate import PartialState
from trl import ModelConfig, TrlParser, get_peft_config, get_quantization_config

from .command_line import CommandLineError, OneLineErrors
from .config import UnlearnConfig
from .sources import load_rows, resolve_model_name
from .trainer import UnlearnTrainer
from .utils import torch_dtype

logger = logging.getLogger(__name__)


@dataclass
class UnlearnScriptArguments:
    """Datasets of an unlearning run (the script arguments of `trainers/unlearn.py`)."""

    forget_dataset_name: str = field(
        default="locuslab/TOFU",
        metadata={
            "help": "Forget set: a Hub dataset id, a local .json/.jsonl/.csv/.parquet file, a local directory of "
            "<config>.json files, or embedded:<name> for the bundled demo data."
        },
    )
    forget_dataset_config: str | None = field(
        default=None,
        metadata={"help": "Configuration of the forget dataset (TOFU: forget01_perturbed, forget10_perturbed, ...)."},
    )
    forget_split: str = field(default="train", metadata={"help": "Split of the forget dataset."})
    retain_dataset_name: str | None = field(
        default="locuslab/TOFU",
        metadata={"help": "Retain set, in the same forms as forget_dataset_name; null for none."},
    )
    retain_dataset_config: str | None = field(
        default=None, metadata={"help": "Configuration of the retain dataset (TOFU: retain90, retain95, retain99)."}
    )
    retain_split: str = field(default="train", metadata={"help": "Split of the retain dataset."})
    max_forget_rows: int | None = field(
        default=None,
        metadata={"help": "Use only the first N forget rows (for smoke tests; logged). None: all of them."},
    )
    max_retain_rows: int | None = field(
        default=None,
        metadata={"help": "Use only the first N retain rows (for smoke tests; logged). None: all of them."},
    )


class RecipeError(CommandLineError):
    """A recipe or command line that cannot be run; its message is one line for the user."""


class RecipeParser(OneLineErrors, TrlParser):
    """`TrlParser` whose errors are one line, and which type-checks the values of the YAML recipe."""

    def set_defaults_with_config(self, **kwargs: Any) -> list[str]:
        actions = {action.dest: action for action in self._actions}
        for key, value in kwargs.items():
            action = actions.get(key)
            if action is None or action.type is None or value is None:
                continue
            values = value if isinstance(value, list) and action.nargs in ("+", "*") else [value]
            for item in values:
                if isinstance(item, (dict, list)) and action.type is str:
                    continue  # dict fields (model_init_kwargs) are parsed as JSON strings or dicts later
                try:
                    action.type(item if isinstance(item, str) else str(item))
                except (TypeError, ValueError) as error:
                    expected = getattr(action.type, "__name__", str(action.type))
                    raise RecipeError(f"recipe key '{key}': {item!r} is not a valid {expected} ({error}).") from None
        unknown = super().set_defaults_with_config(**kwargs)
        if unknown:
            keys = [item.removeprefix("--") for item in unknown if item.startswith("--")]
            raise RecipeError(f"unknown recipe keys {keys}; see `unlearn-peft train --help` for the valid keys.")
        return unknown


def make_parser(prog: str | None = None) -> RecipeParser:
    return RecipeParser((UnlearnScriptArguments, UnlearnConfig, ModelConfig), prog=prog)


def parse_recipe(
    argv: Sequence[str] | None = None, prog: str | None = None
) -> tuple[UnlearnScriptArguments, UnlearnConfig, ModelConfig]:
    """Parse `--config recipe.yaml` plus `--key value` overrides into the three argument dataclasses.

    Raises:
        RecipeError: missing recipe file, unknown key, wrong type, or invalid value (one-line message).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" in argv:
        index = argv.index("--config")
        if index + 1 >= len(argv):
            raise RecipeError("--config needs a path to a recipe YAML file.")
        path = argv[index + 1]
        try:
            open(path, encoding="utf-8").close()
        except OSError as error:
            raise RecipeError(f"recipe {path!r} cannot be read: {error.strerror or error}.") from None
    try:
        script_args, config, model_args = make_parser(prog).parse_args_and_config(argv)
    except RecipeError:
        raise
    except (ValueError, TypeError) as error:
        raise RecipeError(str(error).strip().splitlines()[0]) from None
    if model_args.model_name_or_path is None:
        raise RecipeError("model_name_or_path is required (in the recipe or as --model_name_or_path).")
    return script_args, config, model_args


def model_init_kwargs(model_args: ModelConfig, config: UnlearnConfig) -> dict[str, Any]:
    """`from_pretrained` keyword arguments from the recipe's model section (QLoRA when `load_in_4bit`)."""
    kwargs: dict[str, Any] = dict(config.model_init_kwargs or {})
    kwargs.setdefault("revision", model_args.model_revision)
    if model_args.dtype not in (None, "auto"):
        kwargs.setdefault("dtype", model_args.dtype)
    if model_args.attn_implementation is not None:
        kwargs.setdefault("attn_implementation", model_args.attn_implementation)
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None:
        if isinstance(quantization_config.bnb_4bit_compute_dtype, str):
            quantization_config.bnb_4bit_compute_dtype = torch_dtype(
                quantization_config.bnb_4bit_compute_dtype, "bnb_4bit_compute_dtype"
            )
        kwargs["quantization_config"] = quantization_config
        if torch.cuda.is_available():
            kwargs.setdefault("device_map", {"": PartialState().local_process_index})
    return kwargs


def _limited(dataset, limit: int | None, key: str):
    if limit is None or limit >= len(dataset):
        return dataset
    logger.warning("%s=%d: using the first %d of %d rows.", key, limit, limit, len(dataset))
    return dataset.select(range(limit))


def build_trainer(
    script_args: UnlearnScriptArguments, config: UnlearnConfig, model_args: ModelConfig
) -> UnlearnTrainer:
    """Load the model and datasets a recipe names and build its [`UnlearnTrainer`]."""
    forget = load_rows(
        script_args.forget_dataset_name, script_args.forget_dataset_config, script_args.forget_split, "forget_dataset"
    )
    retain = None
    if script_args.retain_dataset_name:
        retain = load_rows(
            script_args.retain_dataset_name,
            script_args.retain_dataset_config,
            script_args.retain_split,
            "retain_dataset",
        )
        retain = _limited(retain, script_args.max_retain_rows, "max_retain_rows")
    forget = _limited(forget, script_args.max_forget_rows, "max_forget_rows")
    config.model_init_kwargs = model_init_kwargs(model_args, config)
    return UnlearnTrainer(
        model=resolve_model_name(model_args.model_name_or_path),
        args=config,
        forget_dataset=forget,
        retain_dataset=retain,
        peft_config=get_peft_config(model_args),
        forget_dataset_name=_dataset_label(script_args.forget_dataset_name, script_args.forget_dataset_config),
        retain_dataset_name=_dataset_label(script_args.retain_dataset_name, script_args.retain_dataset_config)
        if script_args.retain_dataset_name
        else None,
    )


def _dataset_label(name: str, config: str | None) -> str:
    return f"{name}:{config}" if config else name


def run_recipe(script_args: UnlearnScriptArguments, config: UnlearnConfig, model_args: ModelConfig) -> UnlearnTrainer:
    """Train, save the adapter (+ sidecar) to `output_dir`, and push it when `push_to_hub` is set."""
    trainer = build_trainer(script_args, config, model_args)
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model(config.output_dir)
    if config.push_to_hub:
        trainer.push_to_hub()
    return trainer


def recipe_fields() -> dict[str, dataclasses.Field]:
    """Every valid recipe key and its dataclass field."""
    return {f.name: f for cls in (UnlearnScriptArguments, UnlearnConfig, ModelConfig) for f in dataclasses.fields(cls)}


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Entry point of `trainers/unlearn.py` and `unlearn-peft train`: returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        make_parser(prog).print_help()
        return 0
    try:
        script_args, config, model_args = parse_recipe(argv, prog)
    except RecipeError as error:
        print(f"{prog or 'unlearn'}: error: {error}", file=sys.stderr)
        return 2
    run_recipe(script_args, config, model_args)
    return 0


__all__ = [
    "RecipeError",
    "RecipeParser",
    "UnlearnScriptArguments",
    "build_trainer",
    "make_parser",
    "model_init_kwargs",
    "parse_recipe",
    "recipe_fields",
    "run_recipe",
]
