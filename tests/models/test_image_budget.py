"""The pixel budget a trained model is asked with (models/load.py `image_budget`): the area its
own processor made of the training images, worked by hand for each family's steps."""

from __future__ import annotations

import dataclasses

import pytest

from geospot.models.load import image_budget
from geospot.models.processor import ImageProcessor
from geospot.runs.model_spec import ModelSpec


def _spec(model: str, side: int | None, max_pixels: int = 448 * 448) -> ModelSpec:
    return ModelSpec(kind="sft", base_model=model, engine="local", lora_rank=0, trained_styles=("single",),
                     env_type="single", prompt="", turn_prompts=(), answer_decimals=2, max_pixels=max_pixels,
                     image_side=side, max_tokens=24, data=None)


@pytest.mark.parametrize("model, side, area", [
    ("tiny:qwen2_5_vl", 112, 112 * 112),  # 28 px steps: 112 = 4 x 28, kept
    ("tiny:qwen2_vl", 100, 112 * 112),  # round(100 / 28) = 4 -> 112
    ("tiny:qwen3_vl", 112, 128 * 128),  # 32 px steps: round(112 / 32) = 4 -> 128 (a 112 x 112 budget gave 96)
    ("tiny:qwen3_vl", 1000, 448 * 448),  # larger than the engine budget: the budget (448 = 14 x 32)
    ("tiny:qwen2_5_vl", None, 448 * 448),  # photos of any size: the engine budget
])
def test_the_area_the_processor_made_of_the_training_images(model, side, area):
    assert image_budget(_spec(model, side)) == area


def test_asked_with_that_budget_a_training_image_keeps_its_size(tmp_path):
    # Qwen3-VL's own processor raises small images to 65,536 px (256 x 256): training saw 64 image
    # tokens of a 112 px image, and the budget asks a photo at the same area
    folder = tmp_path / "qwen3"
    folder.mkdir()
    real = ImageProcessor(patch_size=16, image_mean=(0.5,) * 3, image_std=(0.5,) * 3, min_pixels=65536,
                          max_pixels=16777216)
    real.save_pretrained(folder)
    budget = image_budget(_spec(str(folder), 112))
    assert budget == 256 * 256
    assert real.target_size(112, 112, budget) == real.target_size(112, 112, 448 * 448) == (256, 256)


def test_a_processor_out_of_reach_keeps_the_square(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = _spec("no-such-owner/no-such-model-here", 112)
    assert image_budget(spec) == 112 * 112
    assert image_budget(dataclasses.replace(spec, image_side=10)) == 28 * 28
