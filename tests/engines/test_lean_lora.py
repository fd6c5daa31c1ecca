"""lean_lora.py: the lean LoRA forward is PEFT's (fp32 tolerance; bit for bit under a bf16 base), and steps
aside when it must."""

from __future__ import annotations

import torch

from geospot.engines import lean_lora
from tests.engines.engine_helpers import tiny_engine


def _lora_linears(model):
    return [m for m in model.modules() if "_geospot_lean" in m.__dict__]


def test_lean_forward_equals_peft_in_values_and_gradients():
    e = tiny_engine("qwen2_5_vl")
    assert e.lean_lora and _lora_linears(e.model)
    layer = _lora_linears(e.model)[0]
    torch.manual_seed(0)
    with torch.no_grad():  # a trained-looking adapter: B is zero at init
        layer.lora_B["default"].weight.normal_()
    x = torch.randn(3, 5, layer.in_features, requires_grad=True)

    def run():
        y = layer(x)
        y.square().sum().backward()
        g = (x.grad.clone(), layer.lora_A["default"].weight.grad.clone(), layer.lora_B["default"].weight.grad.clone())
        x.grad = None
        layer.zero_grad(set_to_none=True)
        return y.detach(), g

    lean = run()
    peft = type(layer).forward.__get__(layer)
    layer.forward, saved = peft, layer.forward
    ref = run()
    layer.forward = saved
    # the same function summed in another order (scale on the rank-r middle, add inside addmm)
    assert torch.allclose(lean[0], ref[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(lean[1], ref[1]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-4)
    assert not torch.equal(lean[0], layer.base_layer(x).detach())  # the adapter contributes


def test_disabled_adapter_and_uninstall_go_through_peft():
    e = tiny_engine("qwen2_5_vl")
    layer = _lora_linears(e.model)[0]
    with torch.no_grad():
        layer.lora_B["default"].weight.fill_(0.5)
    x = torch.randn(2, layer.in_features)
    with torch.no_grad(), e.model.disable_adapter():
        assert torch.equal(layer(x), layer.base_layer(x))  # the adapter really is off
    lean_lora.uninstall(e.model)
    assert not _lora_linears(e.model)
    assert lean_lora.install(e.model) > 0


def test_bf16_base_with_fp32_adapter_casts_like_peft():
    """The GPU case: PEFT keeps the adapter in fp32 under a bf16 base and casts around it."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(16, 8)).to(torch.bfloat16),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["0"]))
    (layer,) = [m for m in model.modules() if hasattr(m, "lora_A")]
    assert layer.lora_A["default"].weight.dtype == torch.float32 and layer.base_layer.weight.dtype == torch.bfloat16
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    x = torch.randn(3, 16, dtype=torch.bfloat16)
    with torch.no_grad():
        ref = layer(x)
        assert lean_lora.install(model) == 1
        got = layer(x)
    assert got.dtype == ref.dtype == torch.bfloat16 and torch.equal(got, ref)
