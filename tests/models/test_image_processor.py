"""The torchvision-free image processor matches transformers' PIL Qwen2-VL processor."""

import numpy as np
import pytest
from PIL import Image

from geospot.models.processor import ImageProcessor, smart_resize


def test_smart_resize_hand_values():
    assert smart_resize(112, 112, 28, 56 * 56, 448 * 448) == (112, 112)
    assert smart_resize(100, 150, 28, 56 * 56, 448 * 448) == (112, 140)
    # over budget: 1000x1000 into 448*448 -> floor(1000/(1000/448)/28)*28 = 448
    assert smart_resize(1000, 1000, 28, 56 * 56, 448 * 448) == (448, 448)


@pytest.mark.parametrize("size", [(112, 112), (150, 100), (300, 200)])
def test_matches_transformers_pil_processor(size):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    ours = ImageProcessor(max_pixels=224 * 224)
    resized = ours.resize(img)
    pv, grid = ours([resized])
    ref = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=224 * 224)(images=[resized], return_tensors="np")
    assert grid.tolist() == ref["image_grid_thw"].tolist()
    np.testing.assert_allclose(pv.numpy(), ref["pixel_values"], atol=1e-5)


def test_roundtrip_config(tmp_path):
    p = ImageProcessor(patch_size=16, image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5), max_pixels=512 * 512)
    p.save_pretrained(tmp_path)
    assert ImageProcessor.from_pretrained(tmp_path) == p


def test_unresized_image_is_refused():
    with pytest.raises(ValueError, match="multiple of 28"):
        ImageProcessor().grid_thw(Image.new("RGB", (100, 100)))
