import pytest
import torch
from peft import LoraConfig, get_peft_model

from unlearn_peft.assistant import (
    default_assistant_lora_config,
    early_exit_view,
    resolve_assistant_num_layers,
    restrict_lora_config_to_assistant,
)


def test_default_num_layers_is_a_quarter_at_least_one(make_tiny_llama):
    assert resolve_assistant_num_layers(None, make_tiny_llama(num_layers=8).config) == 2
    assert resolve_assistant_num_layers(None, make_tiny_llama(num_layers=3).config) == 1


@pytest.mark.parametrize("bad", [0, -1, 4, 5])
def test_num_layers_out_of_range_is_refused(make_tiny_llama, bad):
    with pytest.raises(ValueError, match=f"assistant_num_layers={bad} is out of range.*4 decoder layers"):
        resolve_assistant_num_layers(bad, make_tiny_llama(num_layers=4).config)


def test_view_shares_tensors_and_keeps_only_k_layers(make_tiny_llama):
    model = make_tiny_llama(num_layers=4)
    view = early_exit_view(model, 2)
    assert len(view.model.layers) == 2 and len(model.model.layers) == 4
    assert view.config.num_hidden_layers == 2 and model.config.num_hidden_layers == 4
    base_pointers = {p.data_ptr() for p in model.parameters()}
    assert {p.data_ptr() for p in view.parameters()} <= base_pointers
    assert view.model.layers[1].mlp.up_proj.weight is model.model.layers[1].mlp.up_proj.weight
    assert view.model.layers[0] is not model.model.layers[0]


def test_view_logits_equal_early_exit_of_the_target(make_tiny_llama):
    model = make_tiny_llama(num_layers=4)
    view = early_exit_view(model, 2).eval()
    input_ids = torch.randint(0, 1000, (2, 7))
    with torch.no_grad():
        hidden = model(input_ids, output_hidden_states=True).hidden_states[2]
        expected = model.lm_head(model.model.norm(hidden))
        actual = view(input_ids).logits
    torch.testing.assert_close(actual, expected)


def test_view_forward_runs_only_k_layers(make_tiny_llama):
    model = make_tiny_llama(num_layers=4)
    calls = []
    for index, layer in enumerate(model.model.layers):
        layer.register_forward_hook(lambda *_, index=index: calls.append(index))
    view = early_exit_view(model, 2)
    with torch.no_grad():
        view(torch.randint(0, 1000, (1, 5)))
    assert calls == [0, 1]  # the view's clones inherit the hooks of layers 0 and 1 only


def test_lora_in_the_view_does_not_reach_the_target(make_tiny_llama):
    model = make_tiny_llama(num_layers=4)
    input_ids = torch.randint(0, 1000, (1, 6))
    with torch.no_grad():
        before = model(input_ids).logits.clone()
    config = default_assistant_lora_config(model, 2)
    config.init_lora_weights = False  # non-zero B, so the adapter changes outputs
    assistant = get_peft_model(early_exit_view(model, 2), config)
    with torch.no_grad():
        after = model(input_ids).logits
        assistant_logits = assistant(input_ids).logits
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear"
    assert not torch.allclose(assistant_logits, early_exit_view(model, 2)(input_ids).logits)


def test_user_lora_config_is_restricted_to_assistant_layers(make_tiny_llama):
    model = make_tiny_llama(num_layers=4)
    config = restrict_lora_config_to_assistant(LoraConfig(r=4, target_modules="all-linear"), model, 2)
    assert config.layers_to_transform == [0, 1]
    assert set(config.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    with pytest.raises(ValueError, match=r"layers_to_transform=\[3\].*outside the assistant's layers 0..1"):
        restrict_lora_config_to_assistant(LoraConfig(target_modules=["q_proj"], layers_to_transform=[3]), model, 2)
