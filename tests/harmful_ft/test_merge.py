"""Stage 1's contract: the saved aligned model is the base weights plus (lora_alpha / r) B A."""
import torch
from safetensors.torch import load_file

from common.models import load_model, load_tokenizer, save_model


def test_merged_lora_respects_alpha_over_r(tiny_models, tmp_path):
    base = load_model(tiny_models["chat"])
    w0 = base.model.layers[0].self_attn.q_proj.weight.detach().clone()
    model = load_model(tiny_models["chat"], lora={"r": 8, "lora_alpha": 4, "target_modules": ["q_proj"]})
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    torch.manual_seed(0)
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()  # peft initialises B = 0: make the delta non-zero
    delta = (4 / 8) * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    save_model(model, load_tokenizer(tiny_models["chat"]), tmp_path / "model", merge_lora=True)
    merged = load_file(tmp_path / "model" / "model.safetensors")["model.layers.0.self_attn.q_proj.weight"]
    assert torch.allclose(merged, w0 + delta.detach(), atol=1e-5)
    assert not torch.allclose(merged, w0 + 2 * delta.detach(), atol=1e-3)
