"""A scripted engine for eval tests: a char-level renderer and a sampler that answers from a
script, counting every call. It implements the parts of the Engine protocol eval uses."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PIL import Image

from geospot.data.types import Sample
from geospot.engines.types import ImageChunk, ModelInput, SampledSequence, SampleParams, TextChunk

EOT = 0  # the end-of-turn token


class CharRenderer:
    stop_token_ids = (EOT,)

    def _encode(self, text: str) -> tuple[int, ...]:
        return tuple(ord(ch) for ch in text)

    def generation_prompt(self, messages) -> ModelInput:
        out = ModelInput()
        for m in messages:
            out = out.append_tokens(self._encode(f"<{m['role']}>"))
            for part in m["content"]:
                if part["type"] == "image":
                    out = ModelInput(out.chunks + (ImageChunk(part["image"], (1, 1, 1), 1),))
                else:
                    out = out.append_tokens(self._encode(part["text"]))
            out = out.append_tokens((EOT,))
        return out.append_tokens(self._encode("<assistant>"))

    def continuation(self, prev: ModelInput, sampled_tokens, user_messages) -> ModelInput:
        tokens = list(sampled_tokens)
        if not tokens or tokens[-1] != EOT:
            tokens.append(EOT)
        return prev.append_tokens(tokens).concat(self.generation_prompt(user_messages))

    def decode(self, tokens) -> str:
        return "".join(chr(t) for t in tokens if t != EOT)

    def text_of(self, prompt: ModelInput) -> str:
        return "".join(self.decode(c.tokens) if isinstance(c, TextChunk) else "<img>" for c in prompt.chunks)


class ScriptedEngine:
    """`script(sample_image, prompt_text, turn, j) -> answer text`; turn = how many
    assistant turns the prompt already holds. Counts calls and prompts."""

    lockstep = None  # one process

    def __init__(self, script: Callable[[Image.Image, str, int, int], str], truncate: bool = False) -> None:
        self.renderer = CharRenderer()
        self.truncate = truncate  # char tokens: real answers are ~3x shorter in real tokens
        self.script = script
        self.calls = 0
        self.prompts_seen = 0
        self.params_seen: list[SampleParams] = []
        self.ids_seen: list[str] = []

    def sample(self, prompts: Sequence[ModelInput], num_samples: int, params: SampleParams):
        self.calls += 1
        self.prompts_seen += len(prompts)
        self.params_seen.append(params)
        out = []
        for p in prompts:
            image = p.images()[0].image
            text = self.renderer.text_of(p)
            turn = text.count("<assistant>") - 1
            self.ids_seen.append(image.info.get("id", "?"))
            group = []
            for j in range(num_samples):
                answer = self.script(image, text, turn, j)
                toks = tuple(ord(ch) for ch in answer)
                stop = not self.truncate or len(toks) < params.max_tokens
                toks = toks if stop else toks[: params.max_tokens]
                group.append(SampledSequence(toks + ((EOT,) if stop else ()), (0.0,) * (len(toks) + stop),
                                             "stop" if stop else "length"))
            out.append(group)
        return out


def make_samples(points, labels=None) -> list[Sample]:
    """One tiny image per (lat, lon); the image carries its id and truth in `.info` so
    scripts can answer per image."""
    out = []
    for i, (lat, lon) in enumerate(points):
        img = Image.new("RGB", (8, 8), (i % 256, 0, 0))
        img.info.update(id=f"s{i}", lat=lat, lon=lon)
        out.append(Sample(id=f"s{i}", image=img, lat=lat, lon=lon, labels=dict(labels[i]) if labels else {}))
    return out


def exact(image, text, turn, j) -> str:
    """Answers the truth, formatted like SFT targets."""
    return f"Latitude: {image.info['lat']:.2f}\nLongitude: {image.info['lon']:.2f}"
