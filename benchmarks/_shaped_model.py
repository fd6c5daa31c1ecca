"""A model in Qwen2.5-VL-3B-Instruct's published shape with random weights and geospot's offline
tokenizer, for benchmarks/gpu_check.py (its docstring says what differs from the real model).
No hub: the config numbers are copied from that repo's config.json; the parameter count
(3,754,622,976) is checked by tests/test_gpu_check.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

# Qwen2.5-VL-3B-Instruct's published config.json; "tiny" is the same recipe at toy size (--dry-run)
SHAPES = {
    "qwen2.5-vl-3b": dict(vocab=151936, hidden=2048, layers=36, heads=16, kv_heads=2, inter=11008,
                          mrope=[16, 24, 24], max_pos=128000, v_hidden=1280, v_depth=32, v_heads=16, v_inter=3420,
                          v_fullatt=[7, 15, 23, 31]),
    "tiny": dict(vocab=1024, hidden=64, layers=2, heads=4, kv_heads=2, inter=256, mrope=[2, 3, 3],
                 max_pos=4096, v_hidden=64, v_depth=2, v_heads=2, v_inter=128, v_fullatt=[1]),
}


def model_config(shape: dict, token_ids: dict[str, int]) -> dict:
    """The HF config dict: Qwen2.5-VL's published 3B layout at the given sizes."""
    rope = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": list(shape["mrope"])}
    assert sum(shape["mrope"]) == shape["hidden"] // shape["heads"] // 2, "mrope sections must sum to head_dim/2"
    text = dict(vocab_size=shape["vocab"], hidden_size=shape["hidden"], intermediate_size=shape["inter"],
                num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
                num_key_value_heads=shape["kv_heads"], max_position_embeddings=shape["max_pos"], rms_norm_eps=1e-6,
                rope_parameters=rope, tie_word_embeddings=True, hidden_act="silu", use_sliding_window=False,
                bos_token_id=None, eos_token_id=token_ids["<|im_end|>"], pad_token_id=token_ids["<|endoftext|>"])
    vision = dict(depth=shape["v_depth"], hidden_size=shape["v_hidden"], intermediate_size=shape["v_inter"],
                  num_heads=shape["v_heads"], out_hidden_size=shape["hidden"], patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, window_size=112, fullatt_block_indexes=list(shape["v_fullatt"]),
                  tokens_per_second=2, hidden_act="silu")
    return dict(text_config=text, vision_config=vision, tie_word_embeddings=True,
                image_token_id=token_ids["<|image_pad|>"], video_token_id=token_ids["<|video_pad|>"],
                vision_start_token_id=token_ids["<|vision_start|>"], vision_end_token_id=token_ids["<|vision_end|>"])


def padded_tokenizer(vocab: int):
    """geospot's tiny offline tokenizer, its BPE vocabulary padded with filler tokens to `vocab`
    entries (never produced by encoding; each decodes to its own name), as an HF tokenizer."""
    from tokenizers import Tokenizer

    from geospot.models.tiny import _hf_tokenizer, train_tokenizer

    tok = train_tokenizer()
    data = json.loads(tok.to_str())
    table = data["model"]["vocab"]
    for i in range(tok.get_vocab_size(), vocab):
        table[f"<|fill_{i}|>"] = i
    return _hf_tokenizer(Tokenizer.from_str(json.dumps(data)))


def build_model(shape_name: str, device: str, dtype: str) -> dict:
    """The model folder in HF layout, reused from the cache when its recipe is unchanged; built in a
    temporary folder renamed into place, so a killed build never leaves half a model."""
    import hashlib
    import os
    import shutil
    import tempfile

    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForImageTextToText

    from geospot.models.tiny import BUILD_VERSION, SPECIAL_TOKENS, cache_root, image_processor_for

    shape = SHAPES[shape_name]
    recipe = json.dumps({"v": 1, "tiny": BUILD_VERSION, "shape": shape, "dtype": dtype,
                         "transformers": transformers.__version__.split(".")[0]}, sort_keys=True)
    folder = cache_root() / "models" / f"gpucheck-{shape_name}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    t0 = time.perf_counter()
    cached = (folder / "DONE").exists()
    if not cached:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            tok = padded_tokenizer(shape["vocab"])
            ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
            config = AutoConfig.for_model("qwen2_5_vl", **model_config(shape, ids))
            torch.manual_seed(0)
            with torch.device(device):  # initialised where it will run: seconds on a GPU for 3.75 B weights
                model = AutoModelForImageTextToText.from_config(config, dtype=getattr(torch, dtype))
            model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
            model.generation_config.pad_token_id = ids["<|endoftext|>"]
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            image_processor_for("qwen2_5_vl").save_pretrained(tmp)
            (tmp / "DONE").write_text(json.dumps({"params": sum(p.numel() for p in model.parameters())}))
            del model
            shutil.rmtree(folder, ignore_errors=True)  # a folder without DONE: an older, broken build
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"folder": str(folder), "cached": cached, "params": json.loads((folder / "DONE").read_text())["params"],
            "build_s": round(time.perf_counter() - t0, 1), "shape": shape_name}
