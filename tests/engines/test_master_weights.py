"""fp32 master weights for bf16 training (issue 23): a small step survives the bf16 rounding,
the bf16 weights are the fp32 reference's cast, resume is exact, LoRA is untouched."""

from types import SimpleNamespace

import torch
from engine_helpers import random_image, tiny_engine

from geospot import prompts
from geospot.engines.datums import make_datum
from geospot.engines.master_weights import MasterWeights
from geospot.engines.types import AdamParams

ADAM = AdamParams(learning_rate=1e-5, weight_decay=0.01)


def _datum(engine, seed=0, lat=12.5, lon=-45.25):
    msgs = [prompts.user_message(random_image(seed), prompts.SINGLE_TURN_PROMPT),
            prompts.assistant_message(prompts.format_answer(lat, lon))]
    full, w = engine.renderer.supervised_example(msgs)
    return make_datum(full, weights=w)


def _bf16_full(**kw):
    return tiny_engine("qwen2_5_vl", lora_rank=0, dtype="bfloat16", **kw)


def _adamw_one_step(values, grads):
    """torch's AdamW, one step from fresh moments, on `values` (their dtype) with `grads`."""
    params = [torch.nn.Parameter(v.clone()) for v in values]
    for p, g in zip(params, grads):
        p.grad = g.to(p.dtype)
    torch.optim.AdamW(params, lr=ADAM.learning_rate, betas=(ADAM.beta1, ADAM.beta2), eps=ADAM.eps,
                      weight_decay=ADAM.weight_decay, foreach=False).step()
    return [p.detach() for p in params]


def _moved_share(after, before, mask):
    return sum(int(((a != b) & m).sum()) for a, b, m in zip(after, before, mask)) / sum(int(m.sum()) for m in mask)


def test_bf16_step_equals_the_fp32_reference_cast_and_the_optimizer_keeps_all_of_it():
    e = _bf16_full()
    assert all(p.dtype == torch.bfloat16 for _, p in e.trainable)
    before = [p.detach().clone() for _, p in e.trainable]
    e.forward_backward([_datum(e)], "cross_entropy")
    grads = [p.grad.clone() for _, p in e.trainable]
    e.optim_step(ADAM)
    after = [p.detach() for _, p in e.trainable]

    # the reference: the same step in fp32 from the same weights and gradients, cast once to bf16
    fp32_ref = _adamw_one_step([b.float() for b in before], grads)
    for (n, _), a, r, m in zip(e.trainable, after, fp32_ref, e.trainer.master.params):
        assert a.dtype == torch.bfloat16 and torch.equal(a, r.to(torch.bfloat16)), n
        assert m.dtype == torch.float32 and torch.equal(m.detach(), r), n
    assert e.trainer.master.copied == len(e.trainable)

    # of the elements with a gradient, the optimizer's weights all moved; the step applied in
    # bf16 (the engine before master weights) keeps only the elements small enough to notice it
    had_grad = [g != 0 for g in grads]
    masters = [m.detach() for m in e.trainer.master.params]
    assert _moved_share(masters, [b.float() for b in before], had_grad) > 0.99
    assert _moved_share(_adamw_one_step(before, grads), before, had_grad) < 0.5


def test_small_steps_accumulate_in_bf16_weights_only_with_master_weights():
    """lr 1e-5 on weights of |w| ~ 0.02 (bf16 half-step ~6e-5): ten steps of the same datum move
    most bf16 weights with master copies; stepped in bf16 they stay where one step left them."""
    d = _datum(_bf16_full())
    shares = {}
    for arm in ("master", "bf16"):
        e = _bf16_full()
        if arm == "bf16":  # the engine before master weights: the optimizer steps the bf16 tensors
            params = [p for _, p in e.trainable]
            e.trainer.master = SimpleNamespace(params=params, take_grads=lambda: None, write_back=lambda: None)
        before = [p.detach().clone() for _, p in e.trainable]
        e.forward_backward([d], "cross_entropy")
        had_grad = [p.grad != 0 for _, p in e.trainable]
        e.optim_step(ADAM)
        for _ in range(9):
            e.train_step([d], "cross_entropy", ADAM)
        shares[arm] = _moved_share([p.detach() for _, p in e.trainable], before, had_grad)
    assert shares["master"] > 0.8 and shares["bf16"] < 0.5, shares


def test_bf16_resume_carries_the_master_weights_exactly(tmp_path):
    data = [_datum(_bf16_full(), seed=i, lat=10 * i, lon=-5 * i) for i in range(3)]
    a = _bf16_full()
    for d in data[:2]:
        a.train_step([d], "cross_entropy", ADAM)
    path = a.save_state(str(tmp_path / "ckpt"))
    a.train_step([data[2]], "cross_entropy", ADAM)

    b = _bf16_full()
    b.load_state(path, with_optimizer=True)
    assert all(m.dtype == torch.float32 for m in b.trainer.master.params)
    b.train_step([data[2]], "cross_entropy", ADAM)
    for (n, p), (_, q) in zip(a.trainable, b.trainable):
        assert torch.equal(p, q), n
    for (n, m), (_, k) in zip(a.trainer.master.named(), b.trainer.master.named()):
        assert torch.equal(m, k), n  # fails if the checkpoint kept only the bf16 rounding


def test_lora_adapters_are_their_own_master_in_bf16():
    e = tiny_engine("qwen2_5_vl", dtype="bfloat16")
    assert e.trainable and all(p.dtype == torch.float32 for _, p in e.trainable)  # PEFT keeps adapters fp32
    before = [p.detach().clone() for _, p in e.trainable]
    e.train_step([_datum(e)], "cross_entropy", AdamParams(learning_rate=1e-2))
    assert e.trainer.master.copied == 0
    assert all(m is p for m, (_, p) in zip(e.trainer.master.params, e.trainable))
    assert any(not torch.equal(p, b) for (_, p), b in zip(e.trainable, before))


def test_take_grads_moves_bf16_gradients_to_fp32_and_write_back_rounds():
    w = torch.nn.Parameter(torch.tensor([1.0, 0.02], dtype=torch.bfloat16))
    f = torch.nn.Parameter(torch.tensor([3.0]))
    m = MasterWeights([("w", w), ("f", f)], {"w": torch.tensor([1.001, 0.02]), "f": f})
    assert m.copied == 1 and m.params[1] is f
    assert m.params[0].dtype == torch.float32 and float(m.params[0][0].detach()) == torch.tensor(1.001).item()
    w.grad = torch.tensor([0.5, -1.0], dtype=torch.bfloat16)
    m.take_grads()
    assert w.grad is None and m.params[0].grad.dtype == torch.float32
    assert m.params[0].grad.tolist() == [0.5, -1.0]
    with torch.no_grad():
        m.params[0].add_(torch.tensor([0.002, 1e-5]))  # 1.003 rounds to 1.0 in bf16 (step 2^-7)
    m.write_back()
    assert w.tolist() == [1.0, torch.tensor(0.02001).to(torch.bfloat16).item()]
