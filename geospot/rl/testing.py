"""A character-level chat renderer and a scripted engine: the RL plumbing (envs, rollouts,
advantages, datums) runs against them in milliseconds, with answers chosen by the test.

Tokens are Unicode code points; token 0 ends a turn; an image is one placeholder token."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from geospot.engines.types import ImageChunk, ModelInput, SampledSequence, SampleParams, TextChunk

EOT = 0


def _ids(text: str) -> tuple[int, ...]:
    return tuple(ord(c) for c in text)


class CharRenderer:
    stop_token_ids = (EOT,)

    def _user(self, msg: dict) -> ModelInput:
        out = ModelInput.from_ints(_ids("<u>"))
        for part in msg["content"]:
            if part["type"] == "image":
                out = ModelInput(out.chunks + (ImageChunk(part["image"], (1, 2, 2), 1),))
            else:
                out = out.append_tokens(_ids(part["text"]))
        return out.append_tokens((EOT,))

    def generation_prompt(self, messages: Sequence[dict]) -> ModelInput:
        out = ModelInput()
        for m in messages:
            out = out.concat(self._user(m))
        return out.append_tokens(_ids("<a>"))

    def continuation(
        self, prev: ModelInput, sampled_tokens: Sequence[int], user_messages: Sequence[dict]
    ) -> ModelInput:
        toks = list(sampled_tokens)
        if not toks or toks[-1] != EOT:
            toks.append(EOT)
        return prev.append_tokens(toks).concat(self.generation_prompt(user_messages))

    def decode(self, tokens: Sequence[int]) -> str:
        return "".join(chr(t) for t in tokens if t != EOT)


def text_of(mi: ModelInput) -> str:
    """The text of a ModelInput, images shown as `#` (for assertions)."""
    return "".join(
        "".join(chr(t) if t else "|" for t in c.tokens) if isinstance(c, TextChunk) else "#" for c in mi.chunks
    )


class ScriptedEngine:
    """`policy(prompt_text, sample_index) -> answer text`; records every sample call. With
    `honour_max_tokens`, an answer longer than `params.max_tokens` is cut there with
    stop_reason "length" (as a real engine does); off by default, so tests can script long answers."""

    lockstep = None  # one process

    def __init__(self, policy: Callable[[str, int], str], logprob: float = -0.5,
                 honour_max_tokens: bool = False) -> None:
        self.renderer = CharRenderer()
        self.policy, self.logprob = policy, logprob
        self.honour_max_tokens = honour_max_tokens
        self.calls: list[tuple[int, int]] = []  # (num prompts, num_samples) per call

    def sample(
        self, prompts: Sequence[ModelInput], num_samples: int, params: SampleParams
    ) -> list[list[SampledSequence]]:
        self.calls.append((len(prompts), num_samples))
        out = []
        for p in prompts:
            seqs = []
            for i in range(num_samples):
                toks = _ids(self.policy(text_of(p), i)) + (EOT,)
                stop = "stop"
                if self.honour_max_tokens and len(toks) > params.max_tokens:
                    toks, stop = toks[: params.max_tokens], "length"
                seqs.append(SampledSequence(tokens=toks, logprobs=(self.logprob,) * len(toks), stop_reason=stop))
            out.append(seqs)
        return out

    def snapshot_sampler(self, keep: int = 1) -> ScriptedEngine:
        """Its policy has no weights that training moves: the engine itself is every version."""
        return self


class VersionedScriptedEngine(ScriptedEngine):
    """A scripted engine whose weights have a version (train_step adds one) and that can pin a
    sampler to a version (async GRPO's snapshot_sampler). `policy(prompt_text, sample_index,
    version)`; `events` records ("sample", version) per sample call and ("train", version
    trained from) per train step, in call order (from any thread)."""

    def __init__(self, policy: Callable[[str, int, int], str], logprob: float = -0.5) -> None:
        super().__init__(lambda text, i: "", logprob)
        self.versioned_policy, self.version = policy, 0
        self.events: list[tuple[str, int]] = []

    def _sample_at(self, version: int, prompts, num_samples: int) -> list[list[SampledSequence]]:
        self.events.append(("sample", version))
        self.calls.append((len(prompts), num_samples))
        out = []
        for p in prompts:
            toks_N = [_ids(self.versioned_policy(text_of(p), i, version)) + (EOT,) for i in range(num_samples)]
            out.append([SampledSequence(tokens=t, logprobs=(self.logprob,) * len(t), stop_reason="stop")
                        for t in toks_N])
        return out

    def sample(self, prompts, num_samples: int, params: SampleParams) -> list[list[SampledSequence]]:
        return self._sample_at(self.version, prompts, num_samples)

    def snapshot_sampler(self, keep: int = 1):
        from geospot.engines.snapshot import PinnedSampler

        v = self.version
        return PinnedSampler(lambda prompts, n, params: self._sample_at(v, prompts, n), self.renderer)

    def train_step(self, datums, loss_fn, adam, loss_config=None):
        import numpy as np

        from geospot.engines.types import ForwardBackwardResult

        self.events.append(("train", self.version))
        self.version += 1
        return ForwardBackwardResult(logprobs=[np.asarray(d.loss_fn_inputs["logprobs"]) for d in datums],
                                     metrics={"datums": float(len(datums))})
