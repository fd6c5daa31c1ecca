"""patch_linear.py: the patch embedding as a matmul equals the Conv3d, in values and gradients."""

from __future__ import annotations

import pytest
import torch

from geospot.engines import patch_linear
from tests.engines.engine_helpers import tiny_engine


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_patch_embedding_as_matmul_equals_the_convolution(family):
    e = tiny_engine(family)
    patch = e.model.get_base_model().model.visual.patch_embed
    assert "forward" in patch.__dict__  # the engine installed it
    torch.manual_seed(0)
    x = torch.randn(12, patch.proj.weight[0].numel())
    patch.proj.weight.requires_grad_(True)  # as under train_vision

    def run():
        y = patch(x)
        y.square().sum().backward()
        g = patch.proj.weight.grad.clone()
        patch.proj.weight.grad = None
        return y.detach(), g

    fast = run()
    patch_linear.uninstall(e.model)
    assert "forward" not in patch.__dict__
    conv = run()
    assert fast[0].shape == conv[0].shape == (12, patch.embed_dim)
    assert torch.allclose(fast[0], conv[0], rtol=1e-5, atol=1e-5)
    assert torch.allclose(fast[1], conv[1], rtol=1e-4, atol=1e-4)
    assert patch_linear.install(e.model)
