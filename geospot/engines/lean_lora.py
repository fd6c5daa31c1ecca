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
    # base + (x A^T s) B^T in one addmm: the scale goes on the rank-r middle, not on the
    # [tokens, out] product, and the add is the matmul's own (no [tokens, out] temporaries)
    x2 = x.reshape(-1, x.shape[-1])
    out = torch.addmm(F.linear(x2, base.weight, base.bias), F.linear(x2, A.weight) * self.scaling[name], B.weight.t())
    return out.view(*x.shape[:-1], out.shape[-1])


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
    return n


def uninstall(model: torch.nn.Module) -> None:
    """Back to PEFT's forward everywhere (A/B timings, tests)."""
    for module in model.modules():
        if "_geospot_lean" in module.__dict__:
            del module.forward
            del module._geospot_lean
