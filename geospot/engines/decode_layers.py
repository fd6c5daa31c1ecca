"""A decode step's decoder layers as plain tensor operations on the modules' weights (issue 24).

A decode step computes little (one token per row) and calls much: through the layer modules each
layer makes ~13 module calls (each through nn.Module's hook machinery), transformers' keyword
decorators, an attention-interface lookup, `F.linear` -> `matmul` -> `t` per linear, and the
rotary embedding as 6 ops for q and 6 for k. Here one function runs every layer with a third of
the dispatched ops: fused RMSNorm; `mm`/`addmm` against transposed views of the weights; the LoRA
A's of linears that read one input (q/k/v, gate/up) stacked so their rank-r middles come from one
matmul; in fp32 the LoRA scale as addmm's alpha and the residual add inside the output matmuls;
the rotary embedding once for q and k together (roll against a sign-folded sine: bit-identical
to rotate_half). Same function as the modules (fp32 tolerance; in bf16/fp16 the modules' own
roundings and PEFT's casts for fp32 adapters are kept). Tests compare sampling with the module
path for the three families, LoRA and full fine-tuning, fp32 and bf16. docs/speed.md, Round 3.

`plan` reads the weights once per sample() call into tuples of views (no copies but the stacked
A's, r x in each; the weights cannot change during a call, and an optimizer step between calls
is read by the next plan). It returns None — the caller keeps the module path — for anything it
does not reproduce: another layer class or activation, a hook on a module, a LoRA layer that is
disabled, merged, another adapter active, or run by PEFT's own forward (lean_lora.py off or not
eligible: dropout, variants).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

# the decoder layers whose forward this module reproduces: norm -> attention -> residual ->
# norm -> SwiGLU MLP -> residual (Qwen3-VL adds an RMSNorm on q and k per head)
LAYERS = ("Qwen2VLDecoderLayer", "Qwen2_5_VLDecoderLayer", "Qwen3VLTextDecoderLayer")


class Lin(NamedTuple):
    """One linear as the step uses it: its weight transposed [in, out] (a view: no copy), bias or
    None; with LoRA its B transposed [r, out], scale, and which columns of its group's
    middle (x A^T for all the linears reading one input, one matmul) are its own."""

    Wt: torch.Tensor
    b: torch.Tensor | None
    Bt: torch.Tensor | None = None
    s: float = 0.0
    cols: slice | None = None


class Group(NamedTuple):
    """Linears that read one input (q/k/v; gate/up): their LoRA A's stacked [in, sum r] (None:
    no LoRA), so the rank-r middles come from one matmul."""

    At: torch.Tensor | None
    lins: tuple[Lin, ...]


class Norm(NamedTuple):
    w: torch.Tensor
    eps: float


class LayerPlan(NamedTuple):
    attn: torch.nn.Module  # the attention module: the attention function reads its layer_idx
    ln_in: Norm
    ln_post: Norm
    qkv: Group
    o: Group
    gate_up: Group
    down: Group
    q_norm: Norm | None  # Qwen3-VL only
    k_norm: Norm | None
    heads: int
    kv_heads: int
    head_dim: int


def _hooked(m: torch.nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or getattr(m, "_backward_hooks", None))


def _weights(m: torch.nn.Module) -> tuple | None:
    """(W, b, A, B, scale) of a plain nn.Linear (A = B = None) or of a LoRA linear lean_lora.py
    runs as base + (x A^T s) B^T; None for anything else."""
    if _hooked(m):
        return None
    if type(m) is torch.nn.Linear:
        return m.weight, m.bias, None, None, 0.0
    lean = m.__dict__.get("_geospot_lean")
    if lean is None:  # PEFT's own forward (lean_lora off) or another kind of layer
        return None
    name, base, A, B = lean
    active = m._active_adapter
    if (m._disable_adapters or m.merged_adapters or (active != name and active != [name])
            or not getattr(m, "cast_input_dtype_enabled", True) or _hooked(base)):
        return None
    return base.weight, base.bias, A.weight, B.weight, float(m.scaling[name])


def _group(mods: list[torch.nn.Module]) -> Group | None:
    parts = [_weights(m) for m in mods]
    if any(p is None for p in parts):
        return None
    lins, As, start = [], [], 0
    for W, b, A, B, s in parts:
        if A is None:
            lins.append(Lin(W.t(), b))
            continue
        r = A.shape[0]
        lins.append(Lin(W.t(), b, B.t(), s, slice(start, start + r)))
        As.append(A)
        start += r
    if len({A.dtype for A in As}) > 1:
        return None
    return Group(torch.cat(As).t() if As else None, tuple(lins))


def _norm(m: torch.nn.Module | None) -> Norm | None:
    if m is None or _hooked(m):
        return None
    return Norm(m.weight, m.variance_epsilon)


@torch.no_grad()  # the stacked A's are a snapshot for this sample() call, outside any graph
def plan(lm: torch.nn.Module) -> list[LayerPlan] | None:
    """Every decoder layer of the text model `lm` as a LayerPlan; None if any is not one this
    module reproduces (the caller then runs the modules)."""
    act = getattr(lm.config, "hidden_act", None)
    if act != "silu":
        return None
    out = []
    for layer in lm.layers:
        if type(layer).__name__ not in LAYERS or _hooked(layer):
            return None
        a, mlp = layer.self_attn, layer.mlp
        if _hooked(a) or _hooked(mlp) or a.training:
            return None
        groups = [_group([a.q_proj, a.k_proj, a.v_proj]), _group([a.o_proj]),
                  _group([mlp.gate_proj, mlp.up_proj]), _group([mlp.down_proj])]
        norms = [_norm(layer.input_layernorm), _norm(layer.post_attention_layernorm)]
        qk = [getattr(a, "q_norm", None), getattr(a, "k_norm", None)]
        qk_norms = [_norm(x) for x in qk]
        if any(x is None for x in [*groups, *norms]) or any(m is not None and n is None for m, n in zip(qk, qk_norms)):
            return None
        d = a.head_dim
        out.append(LayerPlan(a, *norms, *groups, *qk_norms, a.q_proj.out_features // d, a.k_proj.out_features // d,
                             d))
    return out


def _rms(x: torch.Tensor, n: Norm) -> torch.Tensor:
    if x.dtype == torch.float32:  # one fused op, bit-identical to the modules' in fp32
        return F.rms_norm(x, (x.shape[-1],), n.w, n.eps)
    # other dtypes: the modules' own order (normalise in fp32, cast, then scale), not F.rms_norm's
    h = x.float()
    return n.w * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + n.eps)).to(x.dtype)


def _middle(x: torch.Tensor, g: Group) -> torch.Tensor | None:
    """x A^T for every LoRA linear of the group at once (in the adapters' dtype, as PEFT casts)."""
    return None if g.At is None else torch.mm(x.to(g.At.dtype), g.At)


def _linear(x: torch.Tensor, L: Lin, mid: torch.Tensor | None, acc: torch.Tensor | None = None) -> torch.Tensor:
    """(acc +) x W^T + b + (mid s) B^T. In fp32 the adds and the scale go inside the matmuls
    (addmm: lean_lora.py's sum in another order, fp32 tolerance); other dtypes take `_linear_low`."""
    if x.dtype != torch.float32:
        return _linear_low(x, L, mid, acc)
    if acc is None:
        y = torch.mm(x, L.Wt) if L.b is None else torch.addmm(L.b, x, L.Wt)
    else:
        y = torch.addmm(acc if L.b is None else acc + L.b, x, L.Wt)
    return y if L.Bt is None else torch.addmm(y, mid[:, L.cols], L.Bt, alpha=L.s)


def _linear_low(x: torch.Tensor, L: Lin, mid: torch.Tensor | None, acc: torch.Tensor | None) -> torch.Tensor:
    """bf16/fp16: the modules' roundings (each product rounded before the residual is added), so
    the sampler's logprobs stay the trainer's."""
    y = torch.mm(x, L.Wt) if L.b is None else torch.addmm(L.b, x, L.Wt)
    if L.Bt is not None and L.Bt.dtype == x.dtype:  # lean_lora.py's form
        y = torch.addmm(y, mid[:, L.cols] * L.s, L.Bt)
    elif L.Bt is not None:  # PEFT's fp32 adapters under a bf16 base: its order and casts
        y = (y + torch.mm(mid[:, L.cols], L.Bt) * L.s).to(x.dtype)
    return y if acc is None else acc + y


def run(plans: list[LayerPlan], h_ND: torch.Tensor, cos_N1d: torch.Tensor, sin_N1d: torch.Tensor, cache,
        attention_impl: str, mask: torch.Tensor | None, **attention_kwargs) -> torch.Tensor:
    """Hidden states [N, D] of one fed token per row through every layer; `cos`/`sin` the rotary
    embedding of each row's position ([N, 1, head_dim]); each layer's K/V go into `cache` (its
    `update`); `mask` and `attention_kwargs` (shared_prefix) go to the attention function."""
    N = h_ND.shape[0]
    attend = ALL_ATTENTION_FUNCTIONS[attention_impl]
    half = cos_N1d.shape[-1] // 2
    # rotate_half(x) * sin == roll(x, half) * [-sin_1, sin_2]: negating the sine instead of x is exact
    sin_signed = torch.cat([-sin_N1d[..., :half], sin_N1d[..., half:]], dim=-1)
    h = h_ND
    for i, p in enumerate(plans):
        x = _rms(h, p.ln_in)
        mid = _middle(x, p.qkv)
        Lq, Lk, Lv = p.qkv.lins
        q = _linear(x, Lq, mid).view(N, p.heads, p.head_dim)
        k = _linear(x, Lk, mid).view(N, p.kv_heads, p.head_dim)
        v = _linear(x, Lv, mid).view(N, p.kv_heads, 1, p.head_dim)
        if p.q_norm is not None:
            q, k = _rms(q, p.q_norm), _rms(k, p.k_norm)
        qk = torch.cat([q, k], dim=1)  # the rotary embedding once for both
        qk = qk * cos_N1d + qk.roll(half, dims=-1) * sin_signed
        keys, values = cache.update(qk[:, p.heads:, None], v, i)
        o, _ = attend(p.attn, qk[:, : p.heads, None], keys, values, mask, dropout=0.0, scaling=p.attn.scaling,
                      **attention_kwargs)
        o = o.reshape(N, -1)
        h = _linear(o, p.o.lins[0], _middle(o, p.o), acc=h)
        x = _rms(h, p.ln_post)
        mid = _middle(x, p.gate_up)
        Lg, Lu = p.gate_up.lins
        a = F.silu(_linear(x, Lg, mid)) * _linear(x, Lu, mid)
        h = _linear(a, p.down.lins[0], _middle(a, p.down), acc=h)
    return h
