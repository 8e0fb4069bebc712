"""How [`UnlearnTrainer`] saves and publishes an adapter: atomically, with its sidecar, its model card and JSON
training arguments, to a directory or the Hub."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer import TRAINING_ARGS_NAME as TRAINING_ARGS_PICKLE

from .hub import push_adapter
from .model_card import render_model_card
from .saving import staged_save
from .sidecar import UnlearnSidecar, base_model_fingerprint, base_model_reference
from .version import __version__

TRAINING_ARGS_JSON = "training_args.json"


class AdapterPublishingMixin(Trainer):
    """The saving and Hub methods of [`UnlearnTrainer`] (which sets `target_model`, `unlearning_method`,
    `assistant_num_layers`, `retain_columns`, `target_reading`, `dataset_summary` and `convergence_summary`)."""

    def build_sidecar(self) -> UnlearnSidecar:
        """The `unlearn_sidecar.json` describing this run's adapter."""
        name_or_path, revision = base_model_reference(self.target_model.config)
        args = self.args
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
        return UnlearnSidecar(
            method=args.method,
            base_model_name_or_path=name_or_path,
            base_model_revision=revision,
            base_model_fingerprint=base_model_fingerprint(self.target_model),
            library_version=__version__,
            assistant_num_layers=self.assistant_num_layers,
            **self.unlearning_method.sidecar_fields(args, tokenizer, self.target_reading),
            training={
                **self.dataset_summary,
                "retain_loss": self.unlearning_method.retain_loss_name(args),
                "beta": args.beta,
                "forget_loss_weight": args.forget_loss_weight,
                "retain_loss_weight": args.retain_loss_weight,
                **self.unlearning_method.training_fields(args, self.retain_columns),
                **self.target_reading,
                "learning_rate": args.learning_rate,
                "num_train_epochs": args.num_train_epochs,
                "epochs_run": round(self.state.epoch or 0.0, 2),
                "max_length": args.max_length,
                "global_step": self.state.global_step,
                "world_size": args.world_size,
                **self.convergence_summary,
            },
        )

    def _save(self, output_dir: str | None = None, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        # Atomic: a failure while writing leaves the previous adapter in output_dir loadable.
        with staged_save(output_dir) as staging:
            super()._save(str(staging), state_dict=state_dict)
            # Trainer pickles the arguments; resuming never reads them back, and users get JSON instead.
            (staging / TRAINING_ARGS_PICKLE).unlink(missing_ok=True)
            (staging / TRAINING_ARGS_JSON).write_text(self.args.to_json_string(), encoding="utf-8")
            self.build_sidecar().save(staging)
            # PEFT's save_pretrained just wrote its generic README.md; the unlearning card replaces it.
            self.create_model_card(output_dir=str(staging))

    @property
    def hub_repo_id(self) -> str:
        """The repository `init_hf_repo` created, else `hub_model_id`, else the output directory's name."""
        return getattr(self, "hub_model_id", None) or self.args.hub_model_id or Path(self.args.output_dir).name

    def create_model_card(self, output_dir: str | None = None, **kwargs: Any) -> None:
        """Write the unlearning model card (`hub_cards/`) as `README.md`; replaces Trainer's and PEFT's cards."""
        if not self.is_world_process_zero():
            return
        directory = output_dir or self.args.output_dir
        render_model_card(directory, repo_id=self.hub_repo_id).save(os.path.join(directory, "README.md"))

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        *,
        evaluation: str | os.PathLike[str] | dict[str, Any] | None = None,
        base_model: str | None = None,
        datasets: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> str | None:
        """Save the adapter to `output_dir` and upload it with its sidecar and model card to `hub_model_id`.

        Only the adapter files, the sidecar, the card and the optional evaluation are uploaded (see
        [`~unlearn_peft.hub.push_adapter`]); optimizer states and `training_args.json` stay local. Returns the commit
        URL on the main process, `None` elsewhere.
        """
        self.save_model(self.args.output_dir, _internal_call=True)
        if not self.is_world_process_zero():
            return None
        return push_adapter(
            self.args.output_dir,
            self.hub_repo_id,
            evaluation=evaluation,
            base_model=base_model,
            datasets=datasets,
            private=self.args.hub_private_repo,
            token=token or self.args.hub_token,
            revision=revision or self.args.hub_revision,
            commit_message=commit_message or "End of training",
        )

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """With `push_to_hub=True`, checkpoints are pushed like the final adapter: files, sidecar and card."""
        if not self.is_world_process_zero() or self.args.hub_strategy == "end":
            return
        push_adapter(
            checkpoint_folder,
            self.hub_repo_id,
            private=self.args.hub_private_repo,
            token=self.args.hub_token,
            revision=self.args.hub_revision,
            commit_message=f"Training in progress, step {self.state.global_step}",
        )
