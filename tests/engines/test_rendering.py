"""The renderer tokenises exactly as the chat template does."""

import numpy as np
import pytest
from PIL import Image

from geospot import prompts
from geospot.engines.rendering import Renderer
from geospot.engines.types import ImageChunk, TextChunk
from geospot.models.load import load_model
from geospot.models.tiny import FAMILIES


@pytest.fixture(scope="module", params=FAMILIES)
def renderer(request):
    lm = load_model(f"tiny:{request.param}")
    return Renderer(lm.tokenizer, lm.image_processor, max_pixels=224 * 224)


def _template_ids(tok, messages, gen):
    out = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=gen)
    return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)


def test_text_only_equals_apply_chat_template(renderer):
    msgs = [prompts.user_message(None, prompts.SINGLE_TURN_PROMPT)]
    mi = renderer.generation_prompt(msgs)
    assert [type(c) for c in mi.chunks] == [TextChunk]
    assert list(mi.chunks[0].tokens) == _template_ids(renderer.tokenizer, msgs, True)
    full = msgs + [prompts.assistant_message("Latitude: 1.50\nLongitude: -2.25")]
    mi2, w = renderer.supervised_example(full)
    assert list(renderer.tokens_of(mi2)) == _template_ids(renderer.tokenizer, full, False)
    assert len(w) == mi2.length


def test_image_expands_to_expected_tokens(renderer):
    img = Image.new("RGB", (300, 200), (10, 20, 30))
    msgs = [prompts.user_message(img, prompts.SINGLE_TURN_PROMPT)]
    mi = renderer.generation_prompt(msgs)
    kinds = [type(c) for c in mi.chunks]
    assert kinds == [TextChunk, ImageChunk, TextChunk]
    im = mi.chunks[1]
    assert im.image.width * im.image.height <= 224 * 224
    assert im.expected_tokens == renderer.image_processor.num_tokens(im.image)
    vocab = renderer.tokenizer.get_vocab()
    assert mi.chunks[0].tokens[-1] == vocab["<|vision_start|>"] and mi.chunks[2].tokens[0] == vocab["<|vision_end|>"]
    # the template with N pad tokens (what the HF processor feeds the model) equals ours
    text = renderer.tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompts.SINGLE_TURN_PROMPT}]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    text = text.replace("<|image_pad|>", "<|image_pad|>" * im.expected_tokens)
    assert list(renderer.tokens_of(mi)) == renderer.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_supervised_weights_cover_assistant_and_end_of_turn(renderer):
    img = Image.new("RGB", (112, 112))
    answer = prompts.format_answer(48.8566, 2.3522)
    mi, w = renderer.supervised_example(
        [prompts.user_message(img, prompts.SINGLE_TURN_PROMPT), prompts.assistant_message(answer)]
    )
    toks = renderer.tokens_of(mi)
    trained = toks[w > 0]
    assert trained[-1] == renderer.end_of_turn_id
    assert renderer.tokenizer.decode(trained[:-1]) == answer
    assert w[-1] == 0  # the newline after <|im_end|> is template, not answer
    assert set(np.unique(w)) <= {0.0, 1.0}


def test_continuation_appends_sampled_tokens_verbatim(renderer):
    img = Image.new("RGB", (112, 112))
    turn1 = [prompts.user_message(img, prompts.TELESCOPING_PROMPTS[0])]
    prev = renderer.generation_prompt(turn1)
    ans = "Latitude: 10.0\nLongitude: 20.0"
    sampled = renderer.tokenizer(ans, add_special_tokens=False)["input_ids"] + [renderer.end_of_turn_id]
    nxt = [prompts.user_message(None, prompts.TELESCOPING_PROMPTS[1].format(prev="(10.0, 20.0)"))]
    cont = renderer.continuation(prev, sampled, nxt)
    # equals rendering the whole conversation from scratch
    whole = renderer.generation_prompt(turn1 + [prompts.assistant_message(ans)] + nxt)
    assert list(renderer.tokens_of(cont)) == list(renderer.tokens_of(whole))
    # length-stopped samples get the end-of-turn appended
    cont2 = renderer.continuation(prev, sampled[:-1], nxt)
    assert list(renderer.tokens_of(cont2)) == list(renderer.tokens_of(cont))


def test_decode_strips_stop(renderer):
    ids = renderer.tokenizer("Latitude: 1", add_special_tokens=False)["input_ids"]
    assert renderer.decode(ids + [renderer.end_of_turn_id]) == "Latitude: 1"
    assert renderer.end_of_turn_id in renderer.stop_token_ids
