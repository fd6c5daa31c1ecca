"""target_head.py: forward_backward runs the vocabulary-wide head only at target positions, with
gradient only where the loss has one — and its logprobs and every trainable gradient equal the
full-head computation's (each datum alone, logits at every position), for the three Qwen-VL
families, LoRA and full fine-tuning, packed and plain paths."""

import numpy as np
import pytest
import torch
from engine_helpers import naive_logprobs, random_image, tiny_engine

from geospot import prompts
from geospot.engines import target_head
from geospot.engines.datums import make_datum
from geospot.engines.losses import compute_loss
from geospot.engines.prefix import group_datums
from geospot.models.tiny import FAMILIES


def _prompt(e, seed=0, text=prompts.SINGLE_TURN_PROMPT):
    return e.renderer.generation_prompt([prompts.user_message(random_image(seed), text)])


def _datums(e, loss_fn: str, seed=0):
    """Two groups of 3 rollouts (different images) and a loner. cross_entropy: weight 0 over the
    prompt and at some positions inside each completion; importance_sampling: advantage 0 over the
    prompt, random sampler logprobs."""
    rng = np.random.default_rng(seed)
    out = []
    for k, p in enumerate([_prompt(e, seed), _prompt(e, seed + 1, "Where?")]):
        for j in range(3):
            comp = [int(30 + 10 * j + k)] + rng.integers(20, 400, rng.integers(3, 7)).tolist()  # distinct first token
            full = p.append_tokens(comp)
            n_p, n_c = p.length, len(comp)
            if loss_fn == "cross_entropy":
                w = np.concatenate([np.zeros(n_p), rng.uniform(0.5, 1.5, n_c)])
                w[n_p + 1 :: 2] = 0.0  # zero weights inside the completion
                out.append(make_datum(full, weights=w.astype(np.float32)))
            else:
                q = np.concatenate([np.zeros(n_p), rng.normal(-3, 0.5, n_c)]).astype(np.float32)
                a = np.concatenate([np.zeros(n_p), np.full(n_c, rng.normal())]).astype(np.float32)
                out.append(make_datum(full, logprobs=q, advantages=a))
    loner = _prompt(e, seed + 7).append_tokens([110, 120, 130])
    n = loner.length
    if loss_fn == "cross_entropy":
        out.append(make_datum(loner, weights=np.r_[np.zeros(n - 3), 1.0, 0.0, 1.0].astype(np.float32)))
    else:
        out.append(make_datum(loner, logprobs=np.full(n, -1.0, np.float32),
                              advantages=np.r_[np.zeros(n - 3), 0.5, 0.5, 0.5].astype(np.float32)))
    return out


def _inputs(d):
    return {k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in d.loss_fn_inputs.items()
            if k != "target_tokens"}


def _reference(e, datums, loss_fn):
    e.model.zero_grad(set_to_none=True)
    lps = []
    for d in datums:
        lp = naive_logprobs(e, d)
        compute_loss(loss_fn, lp, _inputs(d)).backward()
        lps.append(lp.detach().numpy())
    grads = {n: p.grad.clone() for n, p in e.trainable if p.grad is not None}
    e.model.zero_grad(set_to_none=True)
    return lps, grads


def _engine_run(e, datums, loss_fn):
    e.model.zero_grad(set_to_none=True)
    out = e.forward_backward(datums, loss_fn)
    grads = {n: p.grad.clone() for n, p in e.trainable if p.grad is not None}
    e.model.zero_grad(set_to_none=True)
    return out.logprobs, grads


def _engine(family, mode):
    e = tiny_engine(family, lora_rank=0 if mode.startswith("full") else 4, train_vision=mode.endswith("vision"))
    with torch.no_grad():  # a trained-looking adapter: B is zero at init, which would zero A's gradients
        for n, p in e.trainable:
            if "lora_B" in n:
                p.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(0))
    return e


CASES = [(f, m) for f in FAMILIES for m in ("lora", "full")] + [("qwen2_5_vl", "lora+vision"),
                                                                 ("qwen3_vl", "full+vision")]


@pytest.mark.parametrize("family,mode", CASES)
def test_logprobs_and_gradients_equal_the_full_head(family, mode):
    e = _engine(family, mode)
    assert e.head_at_trained_positions
    for loss_fn in ("cross_entropy", "importance_sampling"):
        datums = _datums(e, loss_fn)
        ref_lp, ref_g = _reference(e, datums, loss_fn)
        assert ref_g and (not mode.endswith("vision") or any("visual" in n for n in ref_g))
        scale = max(g.abs().max().item() for g in ref_g.values())
        assert scale > 0
        for shared in (True, False):  # the packed shared-prefix path and plain padded batches
            e.shared_prefix = shared
            assert any(P for _, P in e.trainer.plan(datums)) == shared
            lp, g = _engine_run(e, datums, loss_fn)
            for a, b in zip(ref_lp, lp):
                assert a.shape == b.shape  # a logprob at every target position, trained or not
                np.testing.assert_allclose(a, b, atol=2e-5, rtol=0)
            assert g.keys() == ref_g.keys(), (shared, loss_fn)
            for n in ref_g:
                diff = (g[n] - ref_g[n]).abs().max().item()
                assert diff <= 1e-4 * scale + 1e-7, (loss_fn, shared, n, diff, scale)
        e.shared_prefix = True


def _vocab_rows_kept_for_backward(e, datums, loss_fn) -> int:
    """Rows of the vocabulary-wide activations autograd saves for the backward during forward_backward
    : the logits logsumexp keeps, at the positions with gradient."""
    V = target_head.output_head(e.model).out_features
    rows = []

    def pack(t):
        if t.dim() == 2 and t.shape[-1] == V and t.grad_fn is not None:  # not the head's (transposed) weight
            rows.append(t.shape[0])
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        e.forward_backward(datums, loss_fn)
    e.model.zero_grad(set_to_none=True)
    return sum(rows)


def _positions(datums, key, packed: bool):
    """(positions with a target, positions where `key` is non-zero): a packed group's prefix
    positions count once however many members share them."""
    if not packed:
        return (sum(d.model_input.length for d in datums),
                sum(int(np.count_nonzero(d.loss_fn_inputs[key])) for d in datums))
    every = needed = 0
    for g in group_datums(datums):
        P = g.prefix_len
        vals = [np.asarray(datums[i].loss_fn_inputs[key]) for i in g.members]
        every += g.row_len
        needed += int(np.count_nonzero(np.any([v[:P] != 0 for v in vals], axis=0)))
        needed += sum(int(np.count_nonzero(v[P:])) for v in vals)
    return every, needed


@pytest.mark.parametrize("packed", [True, False])
def test_the_head_keeps_logits_only_where_the_loss_has_a_gradient(packed):
    """The lever's point: vocabulary-wide logits are computed with gradient (and kept for the
    backward) only at positions with a non-zero advantage/weight, not at the image + prompt."""
    e = _engine("qwen2_5_vl", "lora")
    e.shared_prefix = packed
    for loss_fn, key in (("importance_sampling", "advantages"), ("cross_entropy", "weights")):
        datums = _datums(e, loss_fn)
        every, needed = _positions(datums, key, packed)
        assert 0 < needed < every / 2  # the prompts dominate: the test can tell the two apart
        on = _vocab_rows_kept_for_backward(e, datums, loss_fn)
        e.head_at_trained_positions = False  # the switch off: gradient at every target position
        off = _vocab_rows_kept_for_backward(e, datums, loss_fn)
        e.head_at_trained_positions = True
        assert (on, off) == (needed, every)


def test_rows_passed_to_the_head_with_grad(monkeypatch):
    """Counted at the head itself: rows it projects with autograd on, and all rows it projects."""
    e = _engine("qwen2_vl", "lora")
    datums = _datums(e, "importance_sampling")
    every, needed = _positions(datums, "advantages", True)
    calls = []
    project = target_head.project

    def counting(head, hidden):
        calls.append((hidden.shape[0], torch.is_grad_enabled() and hidden.requires_grad))
        return project(head, hidden)

    monkeypatch.setattr(target_head, "project", counting)
    e.forward_backward(datums, "importance_sampling")
    assert sum(n for n, g in calls if g) == needed
    assert sum(n for n, _ in calls) == every  # every target position once, no pad
    calls.clear()
    e.forward(datums)  # scoring: no gradient anywhere, chunks of at most NO_GRAD_CHUNK_ROWS
    assert sum(n for n, _ in calls) == every and not any(g for _, g in calls)


def test_make_plan_by_hand():
    # entries at flat positions 3, 1, 3, 7; only the one at 1 needs a gradient
    plan = target_head.make_plan(np.array([3, 1, 3, 7]), np.array([5, 6, 7, 8]), np.array([0, 1, 0, 0], bool),
                                 "cpu", chunk_rows=1)
    got = [(p.rows.tolist(), p.entries.tolist(), p.local.tolist(), p.targets.tolist(), p.grad) for p in plan.pieces]
    assert got == [([1], [1], [0], [6], True), ([3], [0, 2], [0, 0], [5, 7], False), ([7], [3], [0], [8], False)]
    assert (plan.rows, plan.grad_rows, plan.n_entries) == (3, 1, 4)
    # no gradient asked: every position in no-grad chunks
    plan = target_head.make_plan(np.array([2, 0, 1]), np.array([1, 1, 1]), np.zeros(3, bool), "cpu", chunk_rows=2)
    assert [p.rows.tolist() for p in plan.pieces] == [[0, 1], [2]] and plan.grad_rows == 0


def test_planned_head_values_equal_the_full_head_and_leave_the_module_as_it_was():
    torch.manual_seed(0)
    head = torch.nn.Linear(6, 11, bias=False)
    h = torch.randn(2, 4, 6, requires_grad=True)
    pos, tgt = np.array([0, 5, 1, 5, 6]), np.array([3, 2, 9, 10, 0])
    plan = target_head.make_plan(pos, tgt, np.array([1, 0, 0, 1, 0], bool), "cpu", chunk_rows=1)

    class Model(torch.nn.Module):  # calls its head on [rows, length, hidden] like a causal LM
        def __init__(self):
            super().__init__()
            self.lm_head = head

        def get_output_embeddings(self):
            return self.lm_head

        def forward(self, x):
            return type("Out", (), {"logits": self.lm_head(x)})

    lp = target_head.target_logprobs(Model(), {"x": h}, plan)
    full = torch.log_softmax(head(h).reshape(8, 11), -1)[torch.from_numpy(pos), torch.from_numpy(tgt)]
    torch.testing.assert_close(lp, full)
    assert "forward" not in head.__dict__ and head(h).shape == (2, 4, 11)  # the head is itself again
    # gradient flows through the entries at positions 0 and 5 (entry 1 shares position 5 with entry 3,
    # which needs it), not through those at positions 1 and 6
    lp.sum().backward()
    g_full = torch.autograd.grad(full[[0, 1, 3]].sum(), h)[0]
    torch.testing.assert_close(h.grad, g_full)


def test_a_batch_without_gradient_positions_still_runs_a_backward_of_zeros():
    """Every forward under grad keeps its backward (FSDP2 resharding counts them across ranks):
    zero advantages everywhere give every trainable parameter a gradient of exact zeros."""
    e = _engine("qwen2_5_vl", "full")
    datums = _datums(e, "importance_sampling")
    for d in datums:
        d.loss_fn_inputs["advantages"][:] = 0.0
    e.model.zero_grad(set_to_none=True)
    out = e.forward_backward(datums, "importance_sampling")
    assert all(len(lp) == d.model_input.length for lp, d in zip(out.logprobs, datums))
    grads = [p.grad for _, p in e.trainable]
    assert all(g is not None for g in grads) and not any(torch.count_nonzero(g) for g in grads)
