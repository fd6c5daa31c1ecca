"""The vision tower's patch embedding as one matmul (issue 24).

Every Qwen-VL family embeds patches with a Conv3d whose kernel equals its stride (temporal 2 x
patch x patch) over inputs that are exactly one kernel each: a linear map of the flattened patch.
The convolution kernels treat it as a tiny 3-D convolution per patch — on CPU ~10x slower than
the matmul it is (about 50 ms per 448 px image here, a tenth of the vision tower), and on GPUs
convolution algorithms for this shape are known to be slow too. `install` gives the module an
instance `forward` doing `linear(patches, weight.view(out, -1), bias)`: the same products, summed
in a different order (fp32 tolerance; tests compare with the convolution). The weight is a view,
not a copy, so training the tower still trains the Conv3d's weight.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F

from geospot.models.compat import peft_base


def _linear_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    w = self.proj.weight
    x = hidden_states.reshape(-1, w[0].numel()).to(w.dtype)
    return F.linear(x, w.reshape(w.shape[0], -1), self.proj.bias).view(-1, self.embed_dim)


def _eligible(module: torch.nn.Module) -> bool:
    conv = getattr(module, "proj", None)
    return (isinstance(conv, torch.nn.Conv3d) and hasattr(module, "embed_dim")
            and tuple(conv.kernel_size) == tuple(conv.stride) and tuple(conv.padding) == (0, 0, 0)
            and tuple(conv.dilation) == (1, 1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


def install(model: torch.nn.Module) -> bool:
    """Switch the vision tower's patch embedding of a Qwen-VL model to the matmul; False when the
    model has none of the expected shape (left alone)."""
    base = peft_base(model)
    patch = getattr(getattr(getattr(base, "model", None), "visual", None), "patch_embed", None)
    if patch is None or not _eligible(patch):
        return False
    patch.forward = types.MethodType(_linear_forward, patch)
    return True


def uninstall(model: torch.nn.Module) -> None:
    """Back to the Conv3d (A/B timings, tests)."""
    base = peft_base(model)
    patch = base.model.visual.patch_embed
    if "forward" in patch.__dict__:
        del patch.forward
