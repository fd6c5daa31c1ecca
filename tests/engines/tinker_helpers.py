"""What the Tinker tests share: Qwen2.5-VL's special token ids and hand-built model inputs."""

from __future__ import annotations

import numpy as np
from PIL import Image

from geospot.engines.types import ImageChunk, ModelInput

# Qwen2.5-VL's ids for the special tokens; plain text tokens are small ints.
IM_START, IM_END, V_START, V_END, IMAGE_PAD = 151644, 151645, 151652, 151653, 151655
MERGE = 2


def image_chunk(w=112, h=84, seed=0) -> ImageChunk:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    grid = (1, h // 14, w // 14)  # patch 14 -> (1, 6, 8) = 48 patches
    return ImageChunk(img, grid, grid[0] * grid[1] * grid[2] // MERGE**2)


def user_turn(text: list[int], image: ImageChunk | None = None) -> ModelInput:
    head = ModelInput.from_ints([IM_START, 872, 198])  # <|im_start|>user\n
    if image is not None:
        head = head.append_tokens([V_START]).concat(ModelInput((image,))).append_tokens([V_END])
    return head.append_tokens(text + [IM_END, 198, IM_START, 77091, 198])  # ...<|im_end|>\n<|im_start|>assistant\n
