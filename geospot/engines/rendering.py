"""Chat messages -> ModelInput, exactly as the model's chat template tokenises them.

One renderer serves both engines. We let the tokenizer's own chat template write the text
(so a real Qwen checkpoint gets its real template, system prompt and all), with each image
as a single `<|image_pad|>` between `<|vision_start|>`/`<|vision_end|>`, tokenise the whole
string once, and replace every `<|image_pad|>` by an ImageChunk of `expected_tokens`
placeholders — what the HF processor does by repeating the pad token, minus the copies.

Loss weights come from character spans: a token is trained on when it starts inside an
assistant message's content or its end-of-turn token, which holds whatever the template
puts around the turns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from geospot.engines.datums import all_tokens
from geospot.engines.types import ImageChunk, ModelInput, TextChunk
from geospot.models.processor import ImageProcessor

IMAGE_PAD = "<|image_pad|>"
END_OF_TURN = "<|im_end|>"
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


def _images_in(messages: Sequence[dict]) -> list[Image.Image]:
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str) or content is None:
            continue
        for part in content:
            if part.get("type") == "image" or "image" in part:
                img = part.get("image")
                if not isinstance(img, Image.Image):
                    raise TypeError(f"image content must be a PIL.Image, got {type(img).__name__}; load the file first")
                out.append(img)
    return out


def _without_images(messages: Sequence[dict]) -> list[dict]:
    """Messages with the PIL objects swapped for None: templates only look at `type`, and the
    tokenizer need not see (or copy) pixels."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = [{"type": "image"} if (p.get("type") == "image" or "image" in p) else p for p in content]
        out.append({**m, "content": content})
    return out


class Renderer:
    def __init__(self, tokenizer, image_processor: ImageProcessor, max_pixels: int | None = None):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.max_pixels = max_pixels
        vocab = tokenizer.get_vocab()
        if IMAGE_PAD not in vocab:
            raise ValueError(f"tokenizer has no {IMAGE_PAD} token: not a Qwen-VL tokenizer")
        self.image_pad_id = vocab[IMAGE_PAD]
        self.end_of_turn_id = vocab[END_OF_TURN]
        self.stop_token_ids: tuple[int, ...] = tuple(vocab[t] for t in STOP_TOKENS if t in vocab)
        # What the template writes after an assistant message's content ("<|im_end|>\n" for
        # Qwen): appended after sampled tokens when a turn is continued.
        probe = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "PROBE"}]
        text = self._template(probe, add_generation_prompt=False)
        suffix = text[text.rindex("PROBE") + len("PROBE"):]
        self._turn_end_ids = tuple(self._tokenize(suffix)[0])
        if not self._turn_end_ids or self._turn_end_ids[0] != self.end_of_turn_id:
            raise ValueError(f"chat template does not end assistant turns with {END_OF_TURN}: {suffix!r}")
        # continuation() renders new user turns after this fixed exchange and keeps what the
        # template adds past it; the exchange's own text is the same every call, so render it once
        self._continuation_base = ({"role": "user", "content": "u"}, {"role": "assistant", "content": "a"})
        self._continuation_before = self._template(self._continuation_base, add_generation_prompt=False)

    # -- text -------------------------------------------------------------------------------

    def _template(self, messages: Sequence[dict], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            _without_images(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def _tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    # -- images -----------------------------------------------------------------------------

    def image_chunk(self, image: Image.Image) -> ImageChunk:
        resized = self.image_processor.resize(image, self.max_pixels)
        grid = self.image_processor.grid_thw(resized)
        return ImageChunk(image=resized, grid_thw=grid, expected_tokens=self.image_processor.num_tokens(resized))

    def _to_model_input(self, ids: Sequence[int], images: Sequence[Image.Image]) -> ModelInput:
        n_pads = sum(1 for t in ids if t == self.image_pad_id)
        if n_pads != len(images):
            raise ValueError(f"chat template wrote {n_pads} image placeholders for {len(images)} images")
        chunks: list = []
        run: list[int] = []
        it = iter(images)
        for t in ids:
            if t == self.image_pad_id:
                if run:
                    chunks.append(TextChunk(tuple(run)))
                    run = []
                chunks.append(self.image_chunk(next(it)))
            else:
                run.append(int(t))
        if run:
            chunks.append(TextChunk(tuple(run)))
        return ModelInput(tuple(chunks))

    # -- the public API ---------------------------------------------------------------------

    def generation_prompt(self, messages: Sequence[dict]) -> ModelInput:
        """The prompt up to and including the assistant header, ready for sampling."""
        ids, _ = self._tokenize(self._template(messages, add_generation_prompt=True))
        return self._to_model_input(ids, _images_in(messages))

    def supervised_example(self, messages: Sequence[dict]) -> tuple[ModelInput, np.ndarray]:
        """(ModelInput, weights_T): weight 1 on every assistant message's tokens including its
        end-of-turn token, 0 elsewhere (system, user, headers, images)."""
        full = self._template(messages, add_generation_prompt=False)
        spans = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            head = self._template(messages[:i], add_generation_prompt=True)
            upto = self._template(messages[: i + 1], add_generation_prompt=False)
            if not (upto.startswith(head) and full.startswith(upto)):
                raise ValueError("the chat template is not prefix-stable; cannot locate assistant turns")
            end = upto.find(END_OF_TURN, len(head))
            if end < 0:
                raise ValueError(f"assistant turn {i} has no {END_OF_TURN} in the rendered template")
            spans.append((len(head), end + len(END_OF_TURN)))
        ids, offsets = self._tokenize(full)
        model_input = self._to_model_input(ids, _images_in(messages))
        weights = []
        for t, (start, _) in zip(ids, offsets):
            w = 1.0 if any(a <= start < b for a, b in spans) else 0.0
            if t == self.image_pad_id:
                continue  # expanded below
            weights.append(w)
        # re-expand to ModelInput positions: image chunks get zeros
        out = []
        k = 0
        for c in model_input.chunks:
            if isinstance(c, TextChunk):
                out.extend(weights[k : k + c.length])
                k += c.length
            else:
                out.extend([0.0] * c.length)
        return model_input, np.asarray(out, dtype=np.float32)

    def continuation(self, prev: ModelInput, sampled_tokens: Sequence[int],
                     user_messages: Sequence[dict]) -> ModelInput:
        """prev + the sampled tokens (+ end-of-turn if sampling stopped on length) + the new user
        turn(s) + the assistant header. The sampled tokens are kept verbatim: nothing is
        re-tokenised, so a multi-turn episode is one sequence the trainer can score."""
        sampled = [int(t) for t in sampled_tokens]
        if sampled and sampled[-1] == self.end_of_turn_id:
            sampled = sampled[:-1]  # re-added verbatim as the first token of the turn end
        out = prev.append_tokens(sampled + list(self._turn_end_ids))
        before = self._continuation_before
        after = self._template([*self._continuation_base, *user_messages], add_generation_prompt=True)
        if not after.startswith(before):
            raise ValueError("the chat template is not prefix-stable; cannot render a continuation")
        ids, _ = self._tokenize(after[len(before) :])
        return out.concat(self._to_model_input(ids, _images_in(user_messages)))

    def decode(self, tokens: Sequence[int]) -> str:
        tokens = [int(t) for t in tokens]
        while tokens and tokens[-1] in self.stop_token_ids:
            tokens = tokens[:-1]
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def tokens_of(self, model_input: ModelInput) -> np.ndarray:
        """int64[T] with image positions as `<|image_pad|>` (what the model's embedding sees)."""
        return all_tokens(model_input, self.image_pad_id)
