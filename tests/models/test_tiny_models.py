"""Tiny offline models: build, reload with plain transformers, tokenizer properties."""

import json

import pytest
import torch
from PIL import Image

from geospot import prompts
from geospot.models.cli import main as model_cli
from geospot.models.load import load_model, resolve_model_path
from geospot.models.tiny import FAMILIES, SPECIAL_TOKENS, build_tiny_model, model_config_dict

FAMILY = pytest.mark.parametrize("family", FAMILIES)


@FAMILY
def test_build_is_cached_and_reloadable(family):
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

    a = build_tiny_model(family, "tiny")
    assert build_tiny_model(family, "tiny") == a  # cached by recipe hash
    info = json.loads((a / "geospot_tiny.json").read_text())
    assert 3e5 < info["params"] < 2e6
    cfg = AutoConfig.from_pretrained(a)
    assert cfg.model_type == family
    text = cfg.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    model = AutoModelForImageTextToText.from_pretrained(a)
    tok = AutoTokenizer.from_pretrained(a)
    assert tok.convert_tokens_to_ids("<|image_pad|>") == cfg.image_token_id
    assert tok.convert_tokens_to_ids("<|vision_start|>") == cfg.vision_start_token_id
    assert len(tok) <= model.config.text_config.vocab_size


def test_tokenizer_digits_and_prompt_vocabulary():
    lm = load_model("tiny:qwen2_5_vl")
    tok = lm.tokenizer
    for s in ("0123456789", "-12.345"):
        pieces = [p for p in tok.tokenize(s) if any(ch.isdigit() for ch in p)]
        assert all(len(p) == 1 for p in pieces), pieces
    # prompt words are whole tokens: the single-turn prompt is short
    n_words = len(prompts.SINGLE_TURN_PROMPT.split())
    assert len(tok.tokenize(prompts.SINGLE_TURN_PROMPT)) < 2.5 * n_words
    # any text still encodes (byte level) and round-trips
    text = "Ünïcode ☃ 48.8566, 2.3522"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    for s in SPECIAL_TOKENS:
        assert len(tok(s, add_special_tokens=False)["input_ids"]) == 1


def test_image_token_count_112px():
    lm = load_model("tiny:qwen2_5_vl")
    img = lm.image_processor.resize(Image.new("RGB", (112, 112)), 448 * 448)
    assert lm.image_processor.num_tokens(img) == 16


def test_small_size_params():
    info = json.loads((build_tiny_model("qwen2_5_vl", "small") / "geospot_tiny.json").read_text())
    assert 1e7 < info["params"] < 2.5e7


def test_cli_builds_into_out(tmp_path, capsys):
    assert model_cli(["tiny", "--family", "qwen2_vl", "--size", "tiny", "--out", str(tmp_path / "m")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["family"] == "qwen2_vl" and (tmp_path / "m" / "config.json").exists()


def test_unknown_family_errors():
    with pytest.raises(ValueError, match="unknown model family"):
        resolve_model_path("tiny:llama")
    with pytest.raises(ValueError, match="unknown model family"):
        model_config_dict("gpt2", "tiny", {t: i for i, t in enumerate(SPECIAL_TOKENS)})


def test_unknown_family_in_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="unknown model family 'llama'"):
        load_model(str(tmp_path))


def test_dtype_auto_cpu_is_fp32():
    lm = load_model("tiny:qwen2_5_vl")
    assert lm.dtype == torch.float32 and lm.device.type == "cpu"
    lm16 = load_model("tiny:qwen2_5_vl", dtype="bfloat16")
    assert next(lm16.model.parameters()).dtype == torch.bfloat16


def test_a_cache_it_cannot_write_is_one_sentence(monkeypatch, tmp_path, capsys):
    """GEOSPOT_CACHE under a file (or read-only): the fix named, no traceback; a run folder likewise."""
    from geospot.config import ConfigError
    from geospot.models import cli
    from geospot.models.tiny import build_tiny_model
    from geospot.runs.folder import claim_run_folder

    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("GEOSPOT_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(ConfigError, match=r"cannot write the tiny model into .*; set GEOSPOT_CACHE \(default"):
        build_tiny_model("qwen2_5_vl", "tiny")
    assert cli.main(["tiny"]) == 2 and "geospot model: cannot write" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"log_path='.*run' cannot be made \(.*\); pick a folder you can write to"):
        claim_run_folder(tmp_path / "file" / "run")


def test_the_cache_follows_xdg_cache_home_unless_geospot_cache_is_set(monkeypatch, tmp_path):
    """A read-only home with a writable XDG_CACHE_HOME (the XDG way to move caches) still failed on
    ~/.cache/geospot; GEOSPOT_CACHE wins over both."""
    from geospot.models.tiny import cache_root

    monkeypatch.delenv("GEOSPOT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "geospot"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "geospot"
    monkeypatch.setenv("GEOSPOT_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "mine"
