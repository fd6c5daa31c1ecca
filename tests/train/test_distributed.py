"""Data parallelism under torchrun (2 gloo processes on CPU) ends where one process ends: same
seed, same global batch, same weights (fp32, max abs diff <= 1e-5). Kept to 2 short steps each:
the CPU is shared."""

import pytest

from dist_helpers import run_both, weight_diff

from geospot.distributed import Dist
from geospot.runs.folder import read_jsonl

TOL = 1e-5
TINY = "tiny:qwen2_5_vl:tiny"
DATA = "synthetic:n=64,size=56,seed=0"


def test_shares_are_contiguous_blocks_in_rank_order():
    # 5 items over 2 ranks: [0, 1] and [2, 3, 4]; 1 item over 2 ranks: rank 0 gets none
    assert [list(Dist(r, 2).share(5)) for r in range(2)] == [[0, 1], [2, 3, 4]]
    assert [list(Dist(r, 2).share(1)) for r in range(2)] == [[], [0]]
    assert [list(Dist(r, 3).share(7)) for r in range(3)] == [[0, 1], [2, 3], [4, 5, 6]]
    assert list(Dist().share(4)) == [0, 1, 2, 3]


def test_one_process_collectives_return_their_input():
    d = Dist()
    assert not d.active and d.is_main
    assert d.sum({"a": 1.5, "b": 2}) == {"a": 1.5, "b": 2}
    assert d.gather("x") == ["x"] and d.broadcast(7) == 7 and d.max(3.0) == 3.0


def _losses(folder):
    return [(r["step"], r["loss"]) for r in read_jsonl(folder / "metrics.jsonl") if "loss" in r]


@pytest.mark.parametrize("lora_rank", [4], ids=["lora"])
def test_sft_two_processes_equal_one(tmp_path, lora_rank):
    # 3 images over 2 ranks (1 + 2), grad_accum=3: one backward pass on rank 0, two on rank 1
    # (vs 3 for one process), and one gradient reduction per step
    args = [f"model_name={TINY}", f"data={DATA}", "max_steps=2", "batch_size=3", "grad_accum=3", "eval_n=0",
            f"lora_rank={lora_rank}", "learning_rate=1e-3", "seed=1", "prompt_style=both"]
    one, two = run_both("geospot.sft", args, tmp_path)
    diff, size = weight_diff(one, two)
    assert diff <= TOL, f"2 processes differ from 1 by {diff}"
    assert size > 1e-3  # the weights moved (LoRA B starts at 0): equality is not of untouched weights
    la, lb = _losses(one), _losses(two)  # rank 0 alone wrote the metrics: each step once
    assert [s for s, _ in lb] == [1, 2] and all(abs(x - y) < 1e-4 for (_, x), (_, y) in zip(la, lb))
    assert not list(two.glob("**/*rank*"))
