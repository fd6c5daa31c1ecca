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
    # the same function summed in another order (scale on the rank-r middle, add inside addmm,
    # LoraLinear's backward matmuls transposed): fp32 rounding relative to each gradient's scale
    assert torch.allclose(lean[0], ref[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(lean[1], ref[1]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6 * float(b.abs().max()))
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


def test_siblings_share_one_middle_matmul_with_the_same_values_and_gradients(monkeypatch):
    """q/k/v and gate/up take their rank-r middles from one matmul (SharedInput): the layer's
    output and every adapter gradient equal each linear computing its own."""
    e = tiny_engine("qwen2_5_vl")
    layer0 = e.model.get_base_model().model.language_model.layers[0]
    attn, mlp = layer0.self_attn, layer0.mlp
    shared = [attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj]
    assert all("_geospot_shared" in m.__dict__ for m in shared)
    assert attn.q_proj._geospot_shared is attn.v_proj._geospot_shared is not mlp.up_proj._geospot_shared
    torch.manual_seed(0)
    with torch.no_grad():
        for m in shared:
            m.lora_B["default"].weight.normal_()
        mlp.up_proj.scaling["default"] = 0.5  # unequal scales: a per-column scale vector
        mlp.gate_proj._geospot_shared.__init__(mlp.gate_proj._geospot_shared.members)
    x = torch.randn(2, lean_lora.SHARE_MIN_ROWS // 2 + 1, attn.q_proj.in_features, requires_grad=True)
    params = [p for m in shared for p in (m.lora_A["default"].weight, m.lora_B["default"].weight)]

    def run():
        ys = [attn.q_proj(x), attn.k_proj(x), attn.v_proj(x), mlp.gate_proj(x), mlp.up_proj(x)]
        sum(y.square().sum() for y in ys).backward()
        out = ([y.detach() for y in ys], [x.grad.clone()] + [p.grad.clone() for p in params])
        x.grad = None
        for p in params:
            p.grad = None
        return out

    calls = []
    middle = lean_lora.SharedInput.middle
    monkeypatch.setattr(lean_lora.SharedInput, "middle", lambda self, *a: calls.append(1) or middle(self, *a))
    fused = run()
    assert len(calls) == 5  # every sibling took its middle from the shared matmul
    assert attn.q_proj._geospot_shared._mid is None  # nothing held once every sibling took its part
    saved = {m: m.__dict__.pop("_geospot_shared") for m in shared}
    alone = run()
    for m, s in saved.items():
        m._geospot_shared = s
    for a, b in zip(fused[0], alone[0]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(fused[1], alone[1]):  # fp32 rounding relative to the gradient's scale (up to 1e5 here)
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6 * float(b.abs().max()))


def test_lora_sum_backward_is_the_derivative_in_every_argument():
    """LoraSum's hand-written backward (the rank-r matmuls transposed) against finite differences
    in float64, with and without a bias, and against autograd's addmm in fp32."""
    torch.manual_seed(0)
    N, i, o, r = 6, 5, 4, 3
    for bias in (True, False):
        args = [torch.randn(N, i), torch.randn(o, i), torch.randn(o) if bias else None, torch.randn(N, r),
                torch.randn(o, r)]
        args = [a.double().requires_grad_() if a is not None else None for a in args]
        assert torch.autograd.gradcheck(lean_lora.LoraSum.apply, args)
    x, W, b, mid, B = (torch.randn(*s, requires_grad=True) for s in ((N, i), (o, i), (o,), (N, r), (o, r)))
    w = torch.randn(N, o)
    ours = torch.autograd.grad((lean_lora.LoraSum.apply(x, W, b, mid, B) * w).sum(), (x, W, b, mid, B))
    ref = torch.autograd.grad((torch.addmm(torch.nn.functional.linear(x, W, b), mid, B.t()) * w).sum(),
                              (x, W, b, mid, B))
    for a, c in zip(ours, ref):
        assert a.shape == c.shape and torch.allclose(a, c, rtol=1e-5, atol=1e-5)
    frozen = torch.randn(o, i)  # a frozen base without bias: the gradients asked for still come
    gx, gmid = torch.autograd.grad(lean_lora.LoraSum.apply(x, frozen, None, mid, B).sum(), (x, mid))
    assert gx.shape == x.shape and gmid.shape == mid.shape


def test_lora_linear_backward_is_the_derivative_in_every_argument():
    """LoraLinear (the middle computed inside, its input gradient added in place) against finite
    differences in float64, and against autograd's `base(x) + (x A^T s) B^T` in fp32."""
    torch.manual_seed(0)
    N, i, o, r, s = 6, 5, 4, 3, 2.5
    for bias in (True, False):
        args = [torch.randn(N, i), torch.randn(o, i), torch.randn(o) if bias else None, torch.randn(r, i),
                torch.randn(o, r)]
        args = [a.double().requires_grad_() if a is not None else None for a in args]
        assert torch.autograd.gradcheck(lambda *a: lean_lora.LoraLinear.apply(*a, s), args)
    x, W, b, A, B = (torch.randn(*sh, requires_grad=True) for sh in ((N, i), (o, i), (o,), (r, i), (o, r)))
    w = torch.randn(N, o)
    ours = torch.autograd.grad((lean_lora.LoraLinear.apply(x, W, b, A, B, s) * w).sum(), (x, W, b, A, B))
    F = torch.nn.functional
    ref = torch.autograd.grad((torch.addmm(F.linear(x, W, b), F.linear(x, A) * s, B.t()) * w).sum(), (x, W, b, A, B))
    for a, c in zip(ours, ref):
        assert a.shape == c.shape and torch.allclose(a, c, rtol=1e-5, atol=1e-5)


def test_hand_backward_off_is_autograd_and_on_gives_the_same_step(monkeypatch):
    """levers.py's switch: the whole language model's adapter gradients with the hand-written
    backward equal autograd's. In float64: some of a random model's gradients are sums that
    cancel to 1e-8, where fp32 rounding is the whole difference."""
    e = tiny_engine("qwen2_5_vl")
    torch.manual_seed(0)
    with torch.no_grad():
        for m in _lora_linears(e.model):
            m.lora_B["default"].weight.normal_(std=0.1)
    lm = e.model.get_base_model().model.language_model.double()
    x = torch.randn(1, lean_lora.SHARE_MIN_ROWS + 6, lm.config.hidden_size, dtype=torch.float64)
    params = [p for m in _lora_linears(lm) for p in (m.lora_A["default"].weight, m.lora_B["default"].weight)]

    def grads():
        out = lm(inputs_embeds=x).last_hidden_state
        return torch.autograd.grad(out.square().mean(), params)

    ran = []  # which backward each side runs: the comparison is of two different computations
    for fn in (lean_lora.LoraSum, lean_lora.LoraLinear):
        monkeypatch.setattr(fn, "backward", staticmethod(
            lambda ctx, g, _b=fn.backward, _n=fn.__name__: ran.append(_n) or _b(ctx, g)))
    hand = grads()
    assert {"LoraSum", "LoraLinear"} <= set(ran)  # shared (q/k/v, gate/up) and sole (o, down) linears
    ran.clear()
    lean_lora.hand_backward(e.model, False)
    auto = grads()
    assert not ran
    lean_lora.hand_backward(e.model, True)
    assert any(float(g.abs().max()) > 0 for g in hand)
    for a, c in zip(hand, auto):
        assert torch.allclose(a, c, rtol=1e-9, atol=1e-12 * float(c.abs().max()))
