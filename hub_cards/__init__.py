"""Jinja model-card templates, rendered with `huggingface_hub.ModelCard.from_template` (see `unlearn_peft.model_card`).

Installed as the `unlearn_peft.hub_cards` package so the templates ship with the library.
"""
