"""Tiny offline Qwen-VL models: random weights, a real architecture, a real tokenizer.

Tests, benchmarks and the demo need a model without the hub. We build one from a config
with transformers' own Qwen-VL classes (so every code path — vision tower, mrope, KV
cache, PEFT — is the real one), train a byte-level BPE tokenizer offline on the prompt
texts and coordinate answers, and save everything in HF layout.

Digits are one token each: an earlier experiment found a ~0.5M-param random Qwen2.5-VL
with digit-per-token BPE learned coordinates by SFT on CPU, while multi-digit merges make
the numbers much harder to learn.

Built folders are cached by a hash of everything that defines them, under
$GEOSPOT_CACHE (or $XDG_CACHE_HOME/geospot, ~/.cache/geospot), so a test session builds each model once.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import torch

from geospot import prompts
from geospot.config import ConfigError
from geospot.models.processor import CLIP_MEAN, CLIP_STD, ImageProcessor

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
BUILD_VERSION = 2  # bump when the recipe changes so caches rebuild

# Qwen's special tokens, in Qwen's order; they get the first ids of our vocabulary.
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)

# Qwen-style chat template (Qwen3-VL's shape: no default system prompt, images as
# <|vision_start|><|image_pad|><|vision_end|>, which the processor expands to N pads).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

VOCAB_SIZE = 512  # BPE target; the model's vocab is the trained tokenizer's length (~480)

# text: hidden, layers, heads, kv heads, intermediate, mrope section (sums to head_dim/2)
# vision: hidden, depth, heads, intermediate
SIZE_SPECS = {
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, inter=256, v_hidden=64, v_depth=2, v_heads=2, v_inter=128),
    "small": dict(
        hidden=256, layers=8, heads=4, kv_heads=2, inter=1024, v_hidden=256, v_depth=4, v_heads=4, v_inter=1024
    ),
}
SIZES = tuple(SIZE_SPECS)


def cache_root() -> Path:
    """$GEOSPOT_CACHE, else the XDG cache folder's geospot/ (a read-only home with a writable XDG_CACHE_HOME)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(os.environ.get("GEOSPOT_CACHE") or (Path(xdg) if xdg else Path.home() / ".cache") / "geospot")


# -- tokenizer --------------------------------------------------------------------------------


def _tokenizer_corpus(seed: int = 0) -> list[str]:
    """Prompt texts and answers in every format the project writes, so the prompt vocabulary
    merges into whole words and the answer format is short."""
    rng = random.Random(seed)
    texts = [prompts.SINGLE_TURN_PROMPT, *prompts.TELESCOPING_PROMPTS, "You are a helpful assistant."]
    lines = []
    for _ in range(2000):
        lat, lon = rng.uniform(-90, 90), rng.uniform(-180, 180)
        dec = rng.choice((0, 1, 2, 3, 4))
        lines.append(prompts.format_answer(lat, lon, dec))
        lines.append(prompts.format_previous_guess(lat, lon, rng.choice(prompts.PREVIOUS_GUESS_DECIMALS)))
    words = (
        "system user assistant the a an of in on at to is was this that photo image picture street view "
        "where taken country region city continent scale coordinates latitude longitude degrees guess "
        "answer final previous refine coarse give your with north south east west"
    ).split()
    for _ in range(500):
        lines.append(" ".join(rng.choice(words) for _ in range(8)))
    return texts * 200 + lines


def train_tokenizer(vocab_size: int = VOCAB_SIZE):
    """A byte-level BPE (any text encodes) with every digit its own token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    return tok


def _hf_tokenizer(tok):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|im_end|>", "<|endoftext|>")],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )


# -- model config -----------------------------------------------------------------------------


def model_config_dict(family: str, size: str, token_ids: dict[str, int]) -> dict:
    """The HF config (as a dict) of a tiny model. Real Qwen layouts, small numbers."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    if size not in SIZE_SPECS:
        raise ValueError(f"unknown tiny model size {size!r}; choose one of {', '.join(SIZES)}")
    s = SIZE_SPECS[size]
    head_dim = s["hidden"] // s["heads"]
    half = head_dim // 2
    # mrope splits the rotary frequencies over (t, h, w); the sections must sum to head_dim/2
    if family == "qwen3_vl":
        mrope = [half // 2, half // 4, half - half // 2 - half // 4]  # interleaved, t gets the most
    else:
        mrope = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    assert sum(mrope) == half, mrope
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope}
    if family == "qwen3_vl":
        rope["mrope_interleaved"] = True
    text = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=s["hidden"],
        intermediate_size=s["inter"],
        num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"],
        num_key_value_heads=s["kv_heads"],
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        rope_parameters=rope,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=token_ids["<|im_end|>"],
        pad_token_id=token_ids["<|endoftext|>"],
    )
    if family == "qwen3_vl":
        text["head_dim"] = head_dim
    if family == "qwen2_vl":
        vision = dict(
            depth=s["v_depth"], embed_dim=s["v_hidden"], hidden_size=s["hidden"], num_heads=s["v_heads"],
            mlp_ratio=s["v_inter"] // s["v_hidden"], patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
        )
    elif family == "qwen2_5_vl":
        vision = dict(
            depth=s["v_depth"], hidden_size=s["v_hidden"], intermediate_size=s["v_inter"], num_heads=s["v_heads"],
            out_hidden_size=s["hidden"], patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
            window_size=112, fullatt_block_indexes=[s["v_depth"] - 1],
        )
    else:
        vision = dict(
            depth=s["v_depth"], hidden_size=s["v_hidden"], intermediate_size=s["v_inter"], num_heads=s["v_heads"],
            out_hidden_size=s["hidden"], patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
            num_position_embeddings=1024, deepstack_visual_indexes=[0],
        )
    return dict(
        model_type=family,
        text_config=text,
        vision_config=vision,
        image_token_id=token_ids["<|image_pad|>"],
        video_token_id=token_ids["<|video_pad|>"],
        vision_start_token_id=token_ids["<|vision_start|>"],
        vision_end_token_id=token_ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def image_processor_for(family: str) -> ImageProcessor:
    if family == "qwen3_vl":  # Qwen3-VL: 16 px patches, mean/std 0.5
        return ImageProcessor(patch_size=16, image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5),
                              min_pixels=32 * 32, max_pixels=1024 * 1024)
    return ImageProcessor(
        patch_size=14, image_mean=CLIP_MEAN, image_std=CLIP_STD, min_pixels=28 * 28, max_pixels=1024 * 1024
    )


# -- build ------------------------------------------------------------------------------------


def _build_into(folder: Path, family: str, size: str, seed: int) -> None:
    from transformers import AutoConfig, AutoModelForImageTextToText

    tok = _hf_tokenizer(train_tokenizer())
    assert len(tok) <= VOCAB_SIZE, f"tokenizer has {len(tok)} tokens > model vocab {VOCAB_SIZE}"
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    cfg_dict = model_config_dict(family, size, ids)
    cfg_dict["text_config"]["vocab_size"] = len(tok)  # no untrained rows a random model could sample
    model_type = cfg_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **cfg_dict)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.bos_token_id = None
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    image_processor_for(family).save_pretrained(folder)
    n_params = sum(p.numel() for p in model.parameters())
    (folder / "geospot_tiny.json").write_text(
        json.dumps({"family": family, "size": size, "seed": seed, "params": n_params})
    )


def build_tiny_model(
    family: str = "qwen2_5_vl", size: str = "tiny", out: str | Path | None = None, seed: int = 0
) -> Path:
    """Build (or reuse from the cache) a random-initialised tiny Qwen-VL model; returns its folder.

    With `out`, the model is (re)built there; otherwise it lives in the cache under a hash
    of its recipe. Builds go to a temp folder renamed into place, so concurrent test
    processes never see half a model."""
    import transformers

    recipe = {
        "v": BUILD_VERSION, "family": family, "size": size, "seed": seed,
        "config": model_config_dict(family, size, {t: i for i, t in enumerate(SPECIAL_TOKENS)}),
        "template": CHAT_TEMPLATE, "corpus": hashlib.sha256("\n".join(_tokenizer_corpus()).encode()).hexdigest(),
        "transformers": transformers.__version__.split(".")[0],
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    target = Path(out) if out is not None else cache_root() / "models" / f"tiny-{family}-{size}-{digest}"
    if out is None and (target / "geospot_tiny.json").exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as e:
        where = "out" if out is not None else "GEOSPOT_CACHE (default $XDG_CACHE_HOME/geospot or ~/.cache/geospot)"
        raise ConfigError(f"cannot write the tiny model into {target.parent} ({e.strerror or e}); set {where} to a "
                          "folder you can write to") from None
    try:
        _build_into(tmp, family, size, seed)
        if target.exists():
            if out is None:  # someone else finished first
                shutil.rmtree(tmp)
                return target
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
