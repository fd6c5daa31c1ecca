"""Small builders the engine tests share: a tiny LoRA engine and a random photo."""

import numpy as np
import torch
from PIL import Image

from geospot.engines import make_engine
from geospot.engines.config import EngineConfig
from geospot.engines.inputs import mrope_positions


def tiny_engine(family, **kw):
    kw.setdefault("lora_rank", 4)
    kw.setdefault("max_pixels", 112 * 112)
    kw.setdefault("device", "cpu")  # the equality tests are fp32-CPU claims, also on a GPU machine
    kw.setdefault("dtype", "float32")
    return make_engine(EngineConfig(model_name=f"tiny:{family}", **kw))


def random_image(seed=0, size=(112, 112)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def sample_with_switch(e, switch: str, prompts, num_samples: int, params) -> dict:
    """The same sampling with the engine's `switch` (a lever such as reserve_kv) on and off:
    {True: groups, False: groups}, the KV store emptied before each so neither reuses the other."""
    out = {}
    for on in (True, False):
        setattr(e, switch, on)
        e.kv_store.clear()
        out[on] = e.sample(prompts, num_samples, params)
    setattr(e, switch, True)
    return out


def naive_logprobs(e, d) -> torch.Tensor:
    """The reference target logprobs of one datum: alone (batch of one, no padding, no mask), the
    model's own head at every position."""
    mi = d.model_input
    pos, _ = mrope_positions(mi, e.spatial_merge)
    kw = dict(input_ids=torch.from_numpy(e.renderer.tokens_of(mi))[None], position_ids=torch.from_numpy(pos)[:, None],
              use_cache=False)
    if mi.images():
        pv, grid = e.image_processor([c.image for c in mi.images()])
        kw.update(pixel_values=pv, image_grid_thw=grid)
    logits = e.model(**kw).logits[0].float()
    t = torch.as_tensor(d.loss_fn_inputs["target_tokens"], dtype=torch.long)
    return logits.gather(-1, t[:, None]).squeeze(-1) - torch.logsumexp(logits, -1)
