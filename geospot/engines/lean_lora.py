"""A lean forward for PEFT's LoRA linears (issue 24).

PEFT's `lora.Linear.forward` is general: it checks its arguments, pops variant keywords, loops
over active adapters, looks each one's modules up in ModuleDicts, casts dtypes and calls four
submodules (base, dropout, A, B). With one plain adapter (no dropout, no DoRA or other variant)
all of that computes `base(x) + B(A(x)) * scaling`; a decode step runs 7 of these per layer for a
single token, so the bookkeeping costs more than the rank-8 matmuls. `install` gives each such
layer an instance `forward` computing `addmm(base(x), A(x) * scaling, B^T)`: the scale on the
rank-r middle and the add inside the matmul, so neither forward nor backward touches a
[tokens, out] temporary (training's largest elementwise work). Same function, summed in another
order: fp32 tolerance against PEFT (tests). Under a bf16 base with fp32 adapters it does PEFT's
own operations and casts (bit-identical). Anything else — adapters disabled (`disable_adapter()`),
merged, another adapter active, extra arguments — goes to PEFT's own forward.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def _lean_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    name, base, A, B = self._geospot_lean
    active = self._active_adapter
    if (args or kwargs or self._disable_adapters or self.merged_adapters or (active != name and active != [name])
            or not getattr(self, "cast_input_dtype_enabled", True)):
        return type(self).forward(self, x, *args, **kwargs)
    if x.dtype != A.weight.dtype:  # PEFT keeps adapters in fp32 under a bf16 base: its casts, in its order
        result = F.linear(x, base.weight, base.bias)
        lora = F.linear(F.linear(x.to(A.weight.dtype), A.weight), B.weight) * self.scaling[name]
        return (result + lora).to(result.dtype)
    # base + (x A^T s) B^T with the add inside the matmul: the scale goes on the rank-r middle,
    # not on the [tokens, out] product, and there are no [tokens, out] temporaries
    x2 = x.reshape(-1, x.shape[-1])
    shared = self.__dict__.get("_geospot_shared") if x2.shape[0] >= SHARE_MIN_ROWS else None
    scale, grad = self.scaling[name], torch.is_grad_enabled()
    if not self.__dict__.get("_geospot_hand", True):  # autograd's backward (levers.py: lora_backward off)
        mid = shared.middle(self, x, x2) if shared is not None else F.linear(x2, A.weight) * scale
        out = torch.addmm(F.linear(x2, base.weight, base.bias), mid, B.weight.t())
    elif shared is not None:
        mid = shared.middle(self, x, x2)
        out = (LoraSum.apply(x2, base.weight, base.bias, mid, B.weight) if grad
               else F.linear(x2, base.weight, base.bias).addmm_(mid, B.weight.t()))
    elif grad:
        out = LoraLinear.apply(x2, base.weight, base.bias, A.weight, B.weight, float(scale))
    else:
        out = F.linear(x2, base.weight, base.bias).addmm_((A.weight @ x2.t()).mul_(scale).t(), B.weight.t())
    return out.view(*x.shape[:-1], out.shape[-1])


class LoraSum(torch.autograd.Function):
    """`x W^T + b + mid B^T`, the rank-r product added in place, with a backward whose rank-r
    matmuls run in the orientation BLAS is fast at. Autograd's own addmm backward lays the
    adapter's gradients out like the weight views it was given, which makes them `[out, N] @ [N, r]`
    and `[N, out] @ [out, r]`: products with a tiny inner or outer side that MKL ran 3-10x slower
    (benchmarks/levers.py, `lora_backward`). Here they are `[r, N] @ [N, out]` and
    `[r, out] @ [out, N]`, returned as transposed views: the same products (their fp32 rounding may
    differ in the last bits), no copies."""

    @staticmethod
    def forward(ctx, x2, W, b, mid, Bw):
        ctx.save_for_backward(x2, W, mid, Bw)
        return F.linear(x2, W, b).addmm_(mid, Bw.t())

    @staticmethod
    @torch.autograd.function.once_differentiable  # a second derivative through it raises, never goes wrong
    def backward(ctx, g):
        x2, W, mid, Bw = ctx.saved_tensors
        need_x, need_W, need_b, need_mid, need_B = ctx.needs_input_grad
        return (g @ W if need_x else None,
                (x2.t() @ g).t() if need_W else None,
                g.sum(0) if need_b else None,
                (Bw.t() @ g.t()).t() if need_mid else None,
                (mid.t() @ g).t() if need_B else None)


class SharedInput:
    """Sibling LoRA linears that read the same input (q/k/v; gate/up): the first one called with
    an input computes every sibling's scaled rank-r middle in one matmul against their stacked
    A matrices; each takes its columns. Fewer, wider matmuls forward and backward (one input
    gradient of rank 3r instead of three of rank r, summed). Kept until every sibling has taken
    its part, recomputed whenever the input object, grad mode or an A matrix changes."""

    def __init__(self, members: list[torch.nn.Module]):
        self.members = members
        self.index = {id(m): i for i, m in enumerate(members)}
        ranks = [m._geospot_lean[2].weight.shape[0] for m in members]
        ends = [sum(ranks[: i + 1]) for i in range(len(ranks))]
        self.cols = [slice(e - r, e) for e, r in zip(ends, ranks)]
        scales = [float(m.scaling[m._geospot_lean[0]]) for m in members]
        self.scale = scales[0] if len(set(scales)) == 1 else torch.tensor(
            [s for s, r in zip(scales, ranks) for _ in range(r)])
        self._key, self._mid, self._left = None, None, 0

    def middle(self, module: torch.nn.Module, x: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        As = [m._geospot_lean[2].weight for m in self.members]
        key = (x, torch.is_grad_enabled(), tuple(a._version for a in As))
        if self._key is None or self._key[0] is not x or self._key[1:] != key[1:]:
            scale = self.scale if isinstance(self.scale, float) else self.scale.to(x2.device, x2.dtype)
            self._mid, self._key, self._left = F.linear(x2, torch.cat(As)) * scale, key, len(self.members)
        mid = self._mid[:, self.cols[self.index[id(module)]]]
        self._left -= 1
        if self._left <= 0:  # every sibling has its part: hold no activations past the layer
            self._key = self._mid = None
        return mid


SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))  # each group reads one input
# below this many tokens (a decode step's rows) the sharing's bookkeeping costs more than the two
# matmuls it saves (benchmarks/levers.py: decode 11 % slower shared, training 3 % faster)
SHARE_MIN_ROWS = 64


def _eligible(module: torch.nn.Module) -> str | None:
    """The adapter name when `module` is a plain single-adapter LoRA Linear, else None."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    if type(module) is not LoraLinear or list(module.lora_A.keys()) != ["default"]:
        return None
    name = "default"
    if (module.lora_variant.get(name) is not None or module.fan_in_fan_out
            or not isinstance(module.lora_dropout[name], torch.nn.Identity)
            or not isinstance(module.base_layer, torch.nn.Linear)):
        return None
    return name


def install(model: torch.nn.Module) -> int:
    """Give every eligible LoRA linear of `model` the lean forward; returns how many."""
    n = 0
    for module in model.modules():
        name = _eligible(module)
        if name is None:
            continue
        module._geospot_lean = (name, module.base_layer, module.lora_A[name], module.lora_B[name])
        module.forward = types.MethodType(_lean_forward, module)
        n += 1
    share_inputs(model)
    return n


def share_inputs(model: torch.nn.Module, on: bool = True) -> None:
    """Give (on) or take from (off) the lean LoRA linears that read one input their SharedInput."""
    for module in model.modules():
        module.__dict__.pop("_geospot_shared", None)
    if not on:
        return
    for parent in model.modules():
        for names in SIBLINGS:
            members = [getattr(parent, nm, None) for nm in names]
            if all(m is not None and "_geospot_lean" in m.__dict__ for m in members) and len(
                    {(m.in_features, m._geospot_lean[2].weight.dtype) for m in members}) == 1:
                shared = SharedInput(members)
                for m in members:
                    m._geospot_shared = shared


def hand_backward(model: torch.nn.Module, on: bool = True) -> None:
    """The lean LoRA linears' backward by LoraSum / LoraLinear (on, the default) or by autograd's
    own matmuls (off: the A/B of benchmarks/levers.py and the tests)."""
    for module in model.modules():
        if "_geospot_lean" in module.__dict__:
            module._geospot_hand = on


def uninstall(model: torch.nn.Module) -> None:
    """Back to PEFT's forward everywhere (A/B timings, tests)."""
    for module in model.modules():
        if "_geospot_lean" in module.__dict__:
            del module.forward
            del module._geospot_lean
            module.__dict__.pop("_geospot_shared", None)
            module.__dict__.pop("_geospot_hand", None)


class LoraLinear(torch.autograd.Function):
    """`x W^T + b + s (x A^T) B^T` for a LoRA linear with its own input (no sibling shares it):
    LoraSum with the middle computed inside, as `[r, N]` (`A @ x^T`, the orientation MKL runs
    fast), and the middle's input gradient added into the base's in place (one addmm_ instead of
    a `[N, in]` product and a sum)."""

    @staticmethod
    def forward(ctx, x2, W, b, A, Bw, scale):
        mid_t = (A @ x2.t()).mul_(scale)  # [r, N]
        ctx.save_for_backward(x2, W, A, Bw, mid_t)
        ctx.scale = scale
        return F.linear(x2, W, b).addmm_(mid_t.t(), Bw.t())

    @staticmethod
    @torch.autograd.function.once_differentiable  # a second derivative through it raises, never goes wrong
    def backward(ctx, g):
        x2, W, A, Bw, mid_t = ctx.saved_tensors
        need_x, need_W, need_b, need_A, need_B = ctx.needs_input_grad[:5]
        gmid_t = Bw.t() @ g.t() if (need_x or need_A) else None  # d/d(middle), [r, N]
        gx = (g @ W).addmm_(gmid_t.t(), A, alpha=ctx.scale) if need_x else None
        return (gx,
                (x2.t() @ g).t() if need_W else None,
                g.sum(0) if need_b else None,
                (gmid_t @ x2).mul_(ctx.scale) if need_A else None,
                (mid_t @ g).t() if need_B else None,
                None)
