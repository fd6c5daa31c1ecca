"""Small builders the engine tests share: a tiny LoRA engine and a random photo."""

import numpy as np
from PIL import Image

from geospot.engines import make_engine
from geospot.engines.config import EngineConfig


def tiny_engine(family, **kw):
    kw.setdefault("lora_rank", 4)
    kw.setdefault("max_pixels", 112 * 112)
    kw.setdefault("device", "cpu")  # the equality tests are fp32-CPU claims, also on a GPU machine
    kw.setdefault("dtype", "float32")
    return make_engine(EngineConfig(model_name=f"tiny:{family}", **kw))


def random_image(seed=0, size=(112, 112)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
