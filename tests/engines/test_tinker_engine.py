"""The Tinker engine against fake clients (the SDK's real types, no service): its start-up
checks (key, network, served models) each end in one sentence, a train step submits
forward_backward and optim_step before waiting on either, the sampler follows each optimizer
step, and checkpoints and exports name what they hold."""

from __future__ import annotations

import json
import re

import httpx
import numpy as np
import pytest

tinker = pytest.importorskip("tinker")

from geospot.config import ConfigError  # noqa: E402
from geospot.engines import tinker_convert as tc  # noqa: E402
from geospot.engines import tinker_engine as te  # noqa: E402
from geospot.engines import tinker_service as ts  # noqa: E402
from geospot.engines.config import EngineConfig  # noqa: E402
from geospot.engines.datums import make_datum  # noqa: E402
from geospot.engines.types import AdamParams, ModelInput, SampleParams  # noqa: E402
from tests.engines.tinker_helpers import IM_END, IMAGE_PAD, image_chunk, user_turn  # noqa: E402

SERVED_VL = "Qwen/Qwen3-VL-30B-A3B-Instruct"

class Future:
    def __init__(self, value=None, error=None, log=None, name=""):
        self.value, self.error, self.log, self.name = value, error, log, name

    def result(self, timeout=None):
        if self.log is not None:
            self.log.append(f"wait:{self.name}")
        if self.error is not None:
            raise self.error
        return self.value


def capabilities(*names):
    return tinker.types.GetServerCapabilitiesResponse(
        supported_models=[{"model_name": n, "trainable": True, "sampleable": True} for n in names]
    )


class FakeRest:
    def __init__(self, caps=None, error=None, urls=None):
        self.caps, self.error = caps, error
        self.urls = urls or {f: f"https://signed/{f}" for f in ("adapter_config.json", "adapter_model.safetensors")}

    def get_server_capabilities(self):
        return Future(self.caps if self.caps is not None else capabilities(SERVED_VL), self.error)

    def get_external_weights_urls(self, path):
        return Future(tinker.types.ExternalWeightsUrlsResponse(urls=self.urls, expires="2030-01-01T00:00:00Z"))


def fb_output(datums):
    outs = [{"logprobs": tinker.TensorData.from_numpy(np.full(d.model_input.length, -0.5, np.float32))} for d in datums]
    return tinker.ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord", loss_fn_outputs=outs, metrics={"loss:sum": 1.5}
    )


class FakeTraining:
    def __init__(self, log):
        self.log = log
        self.saved = []

    def forward_backward(self, data, loss_fn, loss_fn_config=None):
        self.log.append(f"submit:forward_backward:{loss_fn}")
        self.last = (data, loss_fn, loss_fn_config)
        return Future(fb_output(data), log=self.log, name="forward_backward")

    def forward(self, data, loss_fn, loss_fn_config=None):
        return Future(fb_output(data))

    def optim_step(self, params):
        self.log.append(f"submit:optim_step:{params.learning_rate}")
        return Future(tinker.types.OptimStepResponse(metrics={"grad_norm": 0.3}), log=self.log, name="optim_step")

    def save_weights_and_get_sampling_client(self):
        self.log.append("refresh_sampler")
        return Future(FakeSampler(self.log))

    def save_state(self, name, overwrite=False):
        self.saved.append(name)
        return Future(tinker.types.SaveWeightsResponse(path=f"tinker://run-1/weights/{name}"))

    def save_weights_external(self, name, ttl_seconds=None):
        return Future(tinker.types.SaveWeightsExternalResponse(path=f"tinker://run-1/external_weights/{name}"))


class FakeSampler:
    def __init__(self, log):
        self.log = log

    def sample(self, prompt, num_samples, sampling_params):
        self.log.append(f"submit:sample:{prompt.length}")
        seqs = [
            tinker.SampledSequence(
                stop_reason="stop", sequence_id=f"s{i}", _tokens_list=[30 + i, IM_END], _logprobs_list=[-0.1, -0.2]
            )
            for i in range(num_samples)
        ]
        return Future(tinker.types.SampleResponse(sequences=seqs), log=self.log, name="sample")

    def compute_logprobs(self, prompt):
        # token i's logprob = -i/100 (None for the first), images included as -9
        flat = tc.flat_tokens(prompt, IMAGE_PAD)
        return Future([None] + [-9.0 if t == IMAGE_PAD else -i / 100 for i, t in enumerate(flat) if i > 0])


class FakeService:
    def __init__(self):
        self.log = []
        self.created = []

    def create_sampling_client(self, base_model):
        self.created.append(("base sampler", base_model))
        return Future(FakeSampler(self.log))

    def create_lora_training_client(self, base_model, rank, seed=None):
        self.created.append(("lora", base_model, rank))
        return Future(FakeTraining(self.log))

    def create_training_client_from_state_with_optimizer(self, path):
        self.created.append(("state+optimizer", path))
        return Future(FakeTraining(self.log))

    def create_training_client_from_state(self, path):
        self.created.append(("state", path))
        return Future(FakeTraining(self.log))


class FakeRenderer:
    stop_token_ids = (IM_END,)


KEY = {"TINKER_API_KEY": "tml-0123456789"}


def engine(caps=None, rest_error=None, env=KEY, model=SERVED_VL, service=None, **kw):
    cfg = EngineConfig(model_name=model, engine="tinker")
    return te.TinkerEngine(
        cfg,
        renderer=FakeRenderer(),
        service_client=service or FakeService(),
        rest_client_factory=lambda: FakeRest(
            caps if caps is not None else capabilities(SERVED_VL, "Qwen/Qwen3-8B"), rest_error
        ),
        env=env,
        **kw,
    )


def test_no_key_one_sentence(monkeypatch):
    monkeypatch.setattr(te, "_stored_key", lambda: None)  # no `tinker auth login` record either
    service = FakeService()
    with pytest.raises(te.GeospotTinkerError, match="needs a Tinker API key: set TINKER_API_KEY") as e:
        engine(env={}, service=service)
    assert "\n" not in str(e.value) and not re.search(r"\.\s+[A-Z]", str(e.value))  # one sentence
    assert service.created == []  # nothing was started
    assert te.check_api_key({"TINKER_CREDENTIAL_CMD": "x"}, stored_key=lambda: None) == "TINKER_CREDENTIAL_CMD"
    assert te.check_api_key({}, stored_key=lambda: "tml-stored") == "stored credentials"


def test_malformed_key():
    with pytest.raises(te.GeospotTinkerError, match="does not look like a Tinker key"):
        engine(env={"TINKER_API_KEY": "sk-abc"})


def test_bad_key_rejected_by_service():
    req = httpx.Request("GET", "https://tinker.example/api/v1/get_server_capabilities")
    err = tinker.AuthenticationError("invalid api key", response=httpx.Response(401, request=req), body=None)
    service = FakeService()
    with pytest.raises(te.GeospotTinkerError, match=r"rejected the API key \(HTTP 401\)"):
        engine(rest_error=err, service=service)
    assert service.created == []


def test_network_down():
    req = httpx.Request("GET", "https://tinker.example/api/v1/get_server_capabilities")
    with pytest.raises(te.GeospotTinkerError, match="cannot reach the Tinker service"):
        engine(rest_error=tinker.APIConnectionError(request=req))


def test_network_down_with_the_real_sdk_client(monkeypatch):
    """The real RestClient against a closed port: the SDK keeps retrying, we give up with one sentence."""
    monkeypatch.setenv("TINKER_API_KEY", "tml-not-a-real-key")
    cfg = EngineConfig(model_name=SERVED_VL, engine="tinker", tinker_base_url="http://127.0.0.1:9")
    with pytest.raises(te.GeospotTinkerError, match=r"cannot reach the Tinker service at http://127.0.0.1:9"):
        te.fetch_capabilities(cfg, timeout_s=2)


def test_an_unreachable_service_is_one_sentence_from_the_command(monkeypatch, capsys, tmp_path):
    """`geospot sft engine=tinker …` with the service down printed a 42-line traceback (exit 1); it is a
    sentence, exit 2, and the run folder it had made is gone."""
    from geospot.train.sft import main

    def down(cfg, **_kw):
        raise te.GeospotTinkerError("get_server_capabilities: cannot reach the Tinker service at x (TimeoutError): "
                                    "check the network connection")

    monkeypatch.setattr(te, "fetch_capabilities", down)
    monkeypatch.setenv("TINKER_API_KEY", "tml-not-a-real-key")
    run = tmp_path / "run"
    assert main(["engine=tinker", f"model_name={SERVED_VL}", "data=synthetic:n=20,size=56", "max_steps=1",
                 f"log_path={run}"]) == 2
    err = capsys.readouterr().err
    assert "geospot sft: get_server_capabilities: cannot reach the Tinker service" in err and "Traceback" not in err
    assert not run.exists()


def test_service_that_hangs_times_out():
    class Hanging:
        def get_server_capabilities(self):
            import time

            class F:
                def result(self, timeout=None):
                    time.sleep(5)

            return F()

    cfg = EngineConfig(model_name=SERVED_VL, engine="tinker")
    with pytest.raises(te.GeospotTinkerError, match="cannot reach the Tinker service"):
        te.TinkerEngine(
            cfg,
            renderer=FakeRenderer(),
            service_client=FakeService(),
            rest_client_factory=Hanging,
            env=KEY,
            connect_timeout_s=0.2,
        )


def test_model_must_be_served_vision_model():
    with pytest.raises(
        ConfigError, match="is not a vision model on Tinker; vision models it serves: Qwen/Qwen3-VL-30B"
    ):
        engine(model="Qwen/Qwen3-8B")
    with pytest.raises(
        ConfigError, match=r"is not served on Tinker; vision models it serves: Qwen/Qwen3-VL-30B-A3B-Instruct"
    ):
        engine(model="Qwen/Qwen2.5-VL-3B-Instruct")
    with pytest.raises(ConfigError, match="LoRA adapters only"):
        te.TinkerEngine(EngineConfig(model_name=SERVED_VL, engine="tinker", lora_rank=0), env=KEY)


def test_served_vision_models_smallest_first():
    caps = capabilities("Qwen/Qwen3-VL-235B-A22B-Instruct", "Qwen/Qwen3-8B", "Qwen/Qwen3-VL-30B-A3B-Instruct")
    assert ts.served_vision_models(caps) == ["Qwen/Qwen3-VL-30B-A3B-Instruct", "Qwen/Qwen3-VL-235B-A22B-Instruct"]


def test_train_step_submits_both_before_waiting():
    eng = engine()
    full = ModelInput.from_ints([1, 2, 3, 4, 5])
    d = make_datum(full, weights=np.array([0, 0, 1, 1, 1], np.float32))
    res = eng.train_step([d, d], "cross_entropy", AdamParams(learning_rate=2e-4))
    log = eng.service.log
    assert log == [
        "submit:forward_backward:cross_entropy",
        "submit:optim_step:0.0002",
        "wait:forward_backward",
        "wait:optim_step",
    ]
    assert len(res.logprobs) == 2 and res.logprobs[0].shape == (4,)
    assert res.metrics["loss"] == 1.5 and res.metrics["optim/grad_norm"] == pytest.approx(0.3)
    assert eng.steps == 1


def test_sampler_refreshed_after_each_optimizer_step():
    eng = engine()
    prompt = ModelInput.from_ints([1, 2, 3])
    out = eng.sample([prompt, prompt.append_tokens([4])], 2, SampleParams(max_tokens=4))
    assert [len(g) for g in out] == [2, 2] and out[0][1].tokens == (31, IM_END)
    log = eng.service.log
    assert log == ["refresh_sampler", "submit:sample:3", "submit:sample:4", "wait:sample", "wait:sample"]
    eng.sample([prompt], 1, SampleParams())
    assert log.count("refresh_sampler") == 1  # no step since: same weights, same sampler
    d = make_datum(
        ModelInput.from_ints([1, 2, 3]), logprobs=np.zeros(3, np.float32), advantages=np.array([0, 1, 1], np.float32)
    )
    eng.forward_backward([d], "importance_sampling")
    eng.optim_step(AdamParams(1e-4))
    eng.sample([prompt], 1, SampleParams())
    assert log.count("refresh_sampler") == 2


def test_save_and_load_state_roundtrip(tmp_path):
    eng = engine()
    path = tmp_path / "checkpoints" / ".tmp-40-123" / "engine"
    uri = eng.save_state(str(path))
    assert uri == "tinker://run-1/weights/step-000040"
    rec = json.loads((path / "tinker.json").read_text())
    assert rec["tinker_path"] == uri and rec["base_model"] == SERVED_VL and rec["lora_rank"] == 32
    eng.load_state(str(path), with_optimizer=True)
    eng.load_state(uri, with_optimizer=False)
    assert eng.service.created[1:] == [("state+optimizer", uri), ("state", uri)]
    with pytest.raises(te.GeospotTinkerError, match="not a Tinker checkpoint"):
        eng.load_state(str(tmp_path), with_optimizer=True)


def test_export_downloads_the_adapter(tmp_path, monkeypatch):
    eng = engine()
    with pytest.raises(te.GeospotTinkerError, match="adapter only"):
        eng.export(str(tmp_path / "export"), merged=True)
    fetched = []

    def fake_download(url, dest):
        fetched.append(url)
        dest.write_bytes(url.encode())

    monkeypatch.setattr(te, "download_file", fake_download)
    out = eng.export(str(tmp_path / "export"))
    assert out == str(tmp_path / "export")  # a local folder: the model card goes next to the files
    assert (tmp_path / "export" / "adapter_config.json").read_text() == "https://signed/adapter_config.json"
    assert (tmp_path / "export" / "adapter_model.safetensors").exists()
    assert not list((tmp_path / "export").glob(".*.part"))
    rec = json.loads((tmp_path / "export" / "tinker.json").read_text())
    assert rec["tinker_path"] == "tinker://run-1/external_weights/export-export" and rec["kind"] == "export"
    eng._rest_client_factory = lambda: FakeRest(urls={"../evil.json": "https://signed/x"})
    with pytest.raises(te.GeospotTinkerError, match="outside"):
        eng.export(str(tmp_path / "export2"))


def test_make_engine_builds_tinker_engine_lazily(monkeypatch):
    """engine=tinker in EngineConfig reaches this class through make_engine."""
    engines = pytest.importorskip("geospot.engines")
    if not hasattr(engines, "make_engine"):
        pytest.skip("geospot.engines.make_engine is not there yet (engine helper)")
    monkeypatch.setenv("TINKER_API_KEY", "")
    monkeypatch.delenv("TINKER_CREDENTIAL_CMD", raising=False)
    monkeypatch.setattr(te, "_stored_key", lambda: None)
    with pytest.raises(te.GeospotTinkerError, match="TINKER_API_KEY"):
        engines.make_engine(EngineConfig(model_name=SERVED_VL, engine="tinker"))


def test_forward_base_scores_targets_with_the_base_model():
    eng = engine()
    img = image_chunk()
    full = user_turn([11, 12], img).append_tokens([30, 31, IM_END])
    d = make_datum(full, logprobs=np.zeros(full.length, np.float32), advantages=np.ones(full.length, np.float32))
    (lp,) = eng.forward_base([d])
    assert lp.shape == (d.model_input.length,)
    text_T = full.token_mask()[1:]
    expected = -np.arange(1, full.length, dtype=np.float32) / 100
    np.testing.assert_allclose(lp[text_T], expected[text_T], atol=1e-6)
    assert np.all(lp[~text_T] == 0)
    assert ("base sampler", SERVED_VL) in eng.service.created


def test_set_reference_scores_with_a_sampler_of_the_starting_weights():
    eng = engine()
    eng.set_reference()  # RL's start: the weights saved for a sampler become the KL reference
    assert eng.service.log[-1] == "refresh_sampler"
    reference = eng._base_sampler
    eng.optim_step(AdamParams(learning_rate=1e-4))  # later steps do not move the reference
    full = user_turn([11, 12], image_chunk()).append_tokens([30, 31, IM_END])
    d = make_datum(full, logprobs=np.zeros(full.length, np.float32), advantages=np.ones(full.length, np.float32))
    eng.forward_base([d])
    assert eng._base_sampler is reference
    assert not [c for c in eng.service.created if c[0] == "base sampler"]  # never the adapter-free base


def test_no_key_for_a_tinker_path_in_eval_names_evals_way_round(monkeypatch):
    # eval / predict have no engine= key: the sentence points at model= (it said "use engine=local")
    from geospot.config import ConfigError
    from geospot.eval.loading import engine_config_for

    monkeypatch.setattr(te, "_stored_key", lambda: None)
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    monkeypatch.delenv("TINKER_CREDENTIAL_CMD", raising=False)
    with pytest.raises(ConfigError, match=r"^model=tinker://… needs a Tinker API key: .*or give model= a local model, "
                                          r"run folder or export$") as e:
        engine_config_for("tinker://abc/weights/step-001000", base_model="Qwen/Qwen2.5-VL-3B-Instruct")
    assert "engine=local" not in str(e.value)
    monkeypatch.setenv("TINKER_API_KEY", "tml-abc")
    cfg, meta = engine_config_for("tinker://abc/weights/step-001000", base_model="Qwen/Qwen2.5-VL-3B-Instruct")
    assert cfg.engine == "tinker" and meta == {"engine_path": "tinker://abc/weights/step-001000"}
