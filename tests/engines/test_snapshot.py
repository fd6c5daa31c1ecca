"""Samplers pinned to a weights version (async GRPO): made before a train step, they still sample
with the weights of their moment afterwards, on the local engine, on Tinker and on vLLM."""

import numpy as np
import pytest
import torch
from engine_helpers import random_image, tiny_engine

from geospot import prompts
from geospot.engines.datums import make_datum
from geospot.engines.types import AdamParams, ModelInput, SampleParams


def _answer_datum(engine):
    msgs = [prompts.user_message(random_image(0), prompts.SINGLE_TURN_PROMPT),
            prompts.assistant_message(prompts.format_answer(12.5, -45.25))]
    full, w = engine.renderer.supervised_example(msgs)
    return make_datum(full, weights=w)


@pytest.mark.parametrize("lora_rank", [4, 0])
def test_local_snapshot_samples_the_weights_of_its_moment_and_leaves_training_alone(lora_rank):
    e = tiny_engine("qwen2_5_vl", lora_rank=lora_rank)
    p = e.renderer.generation_prompt([prompts.user_message(random_image(1), prompts.SINGLE_TURN_PROMPT)])
    params = SampleParams(max_tokens=6, seed=5)
    before = e.sample([p], 3, params)
    snap = e.snapshot_sampler()
    assert snap.sample([p], 3, params) == before  # nothing trained yet: the live weights
    e.train_step([_answer_datum(e)], "cross_entropy", AdamParams(learning_rate=5e-2))
    live = {n: q.detach().clone() for n, q in e.trainable}
    after = e.sample([p], 3, params)
    assert [s.logprobs for s in after[0]] != [s.logprobs for s in before[0]]  # the step changed the policy
    assert snap.sample([p], 3, params) == before  # the snapshot still samples the old one, exactly
    assert all(torch.equal(q, live[n]) for n, q in e.trainable)  # ...and put the trained weights back
    assert e.sample([p], 3, params) == after and e.kv_reuse == (e.cfg.kv_reuse_tokens > 0)
    e.train_step([_answer_datum(e)], "cross_entropy", AdamParams(learning_rate=5e-2))  # the optimizer still works


def test_tinker_snapshot_keeps_the_sampling_client_of_its_version():
    from test_tinker_engine import engine

    eng = engine()
    prompt = ModelInput.from_ints([1, 2, 3])
    s0 = eng.snapshot_sampler()
    c0 = eng._sampler
    d = make_datum(ModelInput.from_ints([1, 2, 3]), logprobs=np.zeros(3, np.float32),
                   advantages=np.array([0, 1, 1], np.float32))
    eng.train_step([d], "importance_sampling", AdamParams(1e-4))
    s1 = eng.snapshot_sampler()
    c1 = eng._sampler
    assert c1 is not c0 and eng.service.log.count("refresh_sampler") == 2  # one client per weights version
    used = []
    for tag, client in (("v0", c0), ("v1", c1)):
        orig = client.sample
        client.sample = lambda prompt, num_samples, sampling_params, tag=tag, orig=orig: (used.append(tag), orig(
            prompt=prompt, num_samples=num_samples, sampling_params=sampling_params))[1]
    s0.sample([prompt], 2, SampleParams(max_tokens=4))
    s1.sample([prompt], 2, SampleParams(max_tokens=4))
    assert used == ["v0", "v1"]


def test_vllm_snapshot_samples_its_adapter_version_and_keeps_it_on_disk(tmp_path):
    from test_vllm_sampler import FakeLLM, _sampler

    from geospot.engines.vllm_sampler import VLLMSamplingEngine

    inner = tiny_engine("qwen2_5_vl")
    llm = FakeLLM()
    eng = VLLMSamplingEngine(inner, _sampler(llm, tmp_path / "lora", image_pad_id=inner.renderer.image_pad_id))
    p = eng.renderer.generation_prompt([prompts.user_message(random_image(0), prompts.SINGLE_TURN_PROMPT)])
    snaps = []
    for _ in range(3):  # versions 1, 2, 3; k = 2 keeps three samplable
        snaps.append(eng.snapshot_sampler(keep=3))
        eng.train_step([_answer_datum(inner)], "cross_entropy", AdamParams(learning_rate=1e-2))
    for want, snap in zip((1, 2, 3), snaps):
        snap.sample([p], 2, SampleParams(max_tokens=4))
        assert llm.calls[-1].lora.lora_int_id == want
    assert len(list((tmp_path / "lora").iterdir())) == 3  # none of them pruned while still in use


def test_a_snapshot_taken_while_another_samples_copies_the_trained_weights(monkeypatch):
    """Async GRPO: the loop takes the next snapshot while the sampling thread may be inside an older
    snapshot's call, with that snapshot's tensors swapped into the model. The copy must be of the
    trained weights, not of those: before the engine's lock covered it, a snapshot could copy the
    swapped-in old weights (and the next steps sampled a policy k steps older than promised, which
    one depending on thread timing: seeded async runs did not repeat)."""
    import threading

    e = tiny_engine("qwen2_5_vl", lora_rank=0)
    p = e.renderer.generation_prompt([prompts.user_message(random_image(1), prompts.SINGLE_TURN_PROMPT)])
    old = e.snapshot_sampler()
    e.train_step([_answer_datum(e)], "cross_entropy", AdamParams(learning_rate=5e-2))
    trained = {n: q.detach().clone() for n, q in e.trainable}
    inside, release, sample = threading.Event(), threading.Event(), e.sampler.sample

    def held(*a, **k):  # the old snapshot's weights are swapped in while this runs
        inside.set()
        release.wait(10)
        return sample(*a, **k)

    monkeypatch.setattr(e.sampler, "sample", held)
    sampling = threading.Thread(target=old.sample, args=([p], 1, SampleParams(max_tokens=2, seed=1)))
    sampling.start()
    assert inside.wait(10)
    taken: dict = {}
    snapshotting = threading.Thread(target=lambda: taken.setdefault("snap", e.snapshot_sampler()))
    snapshotting.start()
    snapshotting.join(0.3)  # it waits for the sampling call (with the lock), or copies now (without)
    release.set()
    sampling.join(10)
    snapshotting.join(10)
    assert all(torch.equal(taken["snap"].tensors[n], trained[n]) for n in trained)
    assert all(torch.equal(q, trained[n]) for n, q in e.trainable)  # the live weights are the trained ones

