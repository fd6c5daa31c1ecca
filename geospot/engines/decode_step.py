"""One decode step straight through the language model's layers (issue 24).

A decode step feeds one token per row. Through the model's own forward it passes the PEFT wrapper,
the Qwen-VL outer model (pixel and rope-index handling, embedding merge), the text model's
decorators, and mask creation from the 2-D attention mask — per token, work that does not depend
on the token. `LeanDecode` runs only what a text token needs: embed, the rotary embedding of its
(t = h = w) position, every decoder layer against the KV cache, the final norm and the head. The
layers are the model's own modules (LoRA included), so the arithmetic is the same; the mask is the
boolean one SDPA would be given (None when no row has padding).

Used for SDPA-family attention with full-attention layers only (Qwen2-VL, Qwen2.5-VL, Qwen3-VL
text models); anything else — eager attention, sliding windows — takes the model's forward
(`LeanDecode.supported`).

With `functional` (the engine's `functional_decode` switch) the layers run as plain tensor
operations on their weights (decode_layers.py) whenever `decode_layers.plan` knows them: the
same arithmetic with a third of the dispatched operations.
"""

from __future__ import annotations

import torch

from geospot.engines import decode_layers, packed_attention
from geospot.engines.prefix_decode import SharedPrefixKV
from geospot.models.compat import CACHE_ARG, peft_base


class LeanDecode:
    def __init__(self, model: torch.nn.Module):
        base = peft_base(model)
        self.lm = base.model.language_model
        self.head = base.lm_head
        text = self.lm.config
        layer_types = getattr(text, "layer_types", None) or ["full_attention"]
        self.supported = (getattr(text, "_attn_implementation", None) in ("sdpa", packed_attention.NAME)
                          and all(t == "full_attention" for t in layer_types))
        self.text = text
        self.plans: list[decode_layers.LayerPlan] | None = None

    def prepare(self, functional: bool) -> None:
        """Before a sample() call's decode: read the layers' weights for the functional path
        (decode_layers.py; None when it is off or does not know a layer: the modules run).
        prepare(False) after it: the plan's views must not keep swapped-out weights alive."""
        self.plans = decode_layers.plan(self.lm) if functional and self.supported else None

    @property
    def shares_prefix(self) -> bool:
        """Whether the prompts' KV may sit apart from the rows' tails (prefix_decode.py): the
        attention packed_attention.py registers dispatches it."""
        return self.supported and getattr(self.text, "_attn_implementation", None) == packed_attention.NAME

    def __call__(self, tokens_N: torch.Tensor, attention_NW: torch.Tensor | None, positions_N: torch.Tensor,
                 cache, shared_prefix: SharedPrefixKV | None = None) -> torch.Tensor:
        """Logits [N, V] (fp32) of one fed token per row at `positions_N`; `attention_NW` the 0/1
        mask over the cache plus this token (None: no padding anywhere). With `shared_prefix`
        (prefix_decode.py) `cache` holds only the rows' fed tokens, the prompts' KV is read from
        `shared_prefix` once per prompt; `attention_NW` is then unused (the prefix carries its mask)."""
        n = tokens_N.shape[0]
        h = self.lm.embed_tokens(tokens_N[:, None])
        pos = positions_N.view(1, n, 1).expand(3, n, 1)
        rotary = self.lm.rotary_emb(h, pos)
        mask = None if attention_NW is None or shared_prefix is not None else attention_NW.bool()[:, None, None, :]
        extra = {} if shared_prefix is None else {"shared_prefix": shared_prefix}
        if self.plans is not None:
            cos, sin = rotary
            h = decode_layers.run(self.plans, h[:, 0], cos, sin, cache, self.text._attn_implementation, mask, **extra)
            return self.head(self.lm.norm(h)).float()
        for layer in self.lm.layers:
            h = layer(h, attention_mask=mask, position_embeddings=rotary, position_ids=None, use_cache=True,
                      **{CACHE_ARG: cache}, **extra)
            if isinstance(h, tuple):  # older layers return (hidden, ...)
                h = h[0]
        return self.head(self.lm.norm(h)[:, -1]).float()
