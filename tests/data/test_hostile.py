"""Hostile data (issue 17): every case of hostile_corpus.CASES (encodings, JSON types, CSV
dialects, coordinates that are not numbers, symlink loops, spec characters in paths, duplicate
ids, cut or fake containers, broken images, parquet oddities, and the real photos as a control)
goes through `geospot data inspect` and a 2-step SFT on the tiny model, each under a 30 s alarm:
no traceback, no hang, no wrong label, every skip under its own reason.

Cost: the inspect pass is milliseconds a case. The SFT pass shares ONE engine (the tiny model,
loaded once) across all cases by standing a cached engine in for `make_engine`: the point is
what the data does to the run (a clean one-line error before the model would load, or two
training steps on exactly the usable samples), not loading the same model 60 times on 2 cores.
Cases whose data has no usable record must end at the data check, before the model."""

from __future__ import annotations

import contextlib
import io
import signal

import pytest
from hostile_corpus import CASES, NO_USABLE, outcome

PER_CASE_S = 30


@pytest.fixture(autouse=True, scope="module")
def _imports_before_the_alarms():
    """torch and simplejpeg load lazily on the first image; on a busy machine that import
    alone can take many seconds, which is not the data's doing: load them first."""
    from geospot.data.prep import one_torch_thread

    one_torch_thread()


class Hang(BaseException):
    """Raised by the alarm; not an OSError (TimeoutError is one, and a reader that catches
    OSError would swallow it and go on hanging)."""


@contextlib.contextmanager
def alarm(seconds: int):
    def fire(*_):
        raise Hang(f"hang: more than {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_corpus_is_big_enough():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_inspect(case, tmp_path):
    with alarm(PER_CASE_S):
        got = outcome(case, str(tmp_path))
    assert "traceback" not in got, got.get("tb")
    if case.error:
        assert "error" in got and case.error in got["error"], got
        assert len(got["error"].splitlines()) == 1 and "Traceback" not in got["error"]
        return
    assert "error" not in got, got
    # no wrong label: exactly the ids we expect, each with the coordinates written into the data
    assert set(got["samples"]) == set(case.samples), (sorted(got["samples"]), sorted(case.samples))
    for sid, (lat, lon) in case.samples.items():
        assert got["samples"][sid] == pytest.approx([lat, lon], abs=1e-9), sid
    assert got["skipped"] == case.skipped
    assert got["n"] == len(case.samples)


@pytest.fixture(scope="module")
def shared_engine():
    from geospot.engines import EngineConfig, make_engine

    return make_engine(EngineConfig(model_name="tiny:qwen2_5_vl", lora_rank=4, device="cpu", max_pixels=56 * 56))


def _sft_spec(spec: str) -> str:
    return spec + ",val_frac=0,test_frac=0"  # every sample in the train split: the documented spec option


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_two_step_sft(case, tmp_path, monkeypatch, shared_engine):
    from geospot import engines
    from geospot.train import sft

    loads = []
    monkeypatch.setattr(engines, "make_engine", lambda cfg: loads.append(cfg) or shared_engine)
    spec = case.build(str(tmp_path / "data"))
    log = tmp_path / "run"
    err = io.StringIO()
    with alarm(PER_CASE_S), contextlib.redirect_stderr(err):
        rc = sft.main(["model_name=tiny:qwen2_5_vl", f"data={_sft_spec(spec)}", "max_steps=2", "batch_size=2",
                       "eval_n=0", "eval_at_start=false", "save_every=0", "lora_rank=4", f"max_pixels={56 * 56}",
                       f"log_path={log}", "behavior_if_log_dir_exists=raise", "log_every=1"])
    text = err.getvalue()
    assert "Traceback" not in text, text[-2000:]
    if case.error or not case.samples:
        assert rc == 2, text[-2000:]
        message = [line for line in text.splitlines() if line.startswith("geospot sft:")]
        assert len(message) == 1, text[-2000:]
        assert (case.error or NO_USABLE) in message[0]
        assert not loads, "the model was loaded for data with no usable record"
        assert not log.exists(), "a failed start left a run folder"
    else:
        assert rc == 0, text[-2000:]
        assert len(loads) == 1 and "done: 2 steps" in text
