"""benchmarks/gpu_check.py: its --dry-run (every phase's code on CPU with the tiny shape, as a
subprocess, the way a GPU lease would run it), the 3B shape's parameter count, failure
isolation and the time guard, the ratio arithmetic, and the README rows it feeds."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gc():
    # imported by name (not from a spec), so its phase functions pickle into the phase processes
    sys.path.insert(0, str(SCRIPT.parent))
    yield importlib.import_module("gpu_check")
    sys.path.remove(str(SCRIPT.parent))


def test_dry_run_runs_every_phase(tmp_path):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"date": "x", "results": {"geo": {"haversine_pairs_per_s": 1}}}))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--results", str(results),
                           "--json-out", str(tmp_path / "run.json")],
                          capture_output=True, text=True, timeout=400, env=env, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])  # ONE JSON line on stdout
    assert doc["dry_run"] and doc["device"] == "cpu" and doc["phases_failed"] == []
    assert doc["phases_ok"] == ["build", "sft_lora", "sft_full", "grpo_torch", "kv_reuse", "trl"]
    ph = doc["phases"]
    assert ph["grpo_vllm"]["skipped"] and ph["trl_vllm"]["skipped"]  # no vllm on the CPU box
    assert ph["sft_lora"]["ok"] and ph["sft_full"]["ok"]  # both steps moved the weights, finite losses
    assert ph["sft_full"]["trainable_params"] > ph["sft_lora"]["trainable_params"]
    g = ph["grpo_torch"]
    plan = doc["plan"]
    assert g["rollouts"] == plan["images"] * plan["group"] and g["gap_tokens"] == g["rollouts"] * plan["tokens"]
    # fp32 on CPU: the torch sampler and the trainer compute the same logprobs
    assert g["logprob_gap_max"] < 1e-4
    assert ph["kv_reuse"]["ok"] and ph["kv_reuse"]["prefill_ratio_off_over_on"] > 1.5
    assert doc["ratio_rollouts_per_s"] == pytest.approx(g["rollouts_per_s"] / ph["trl"]["rollouts_per_s"], rel=1e-2)
    saved = json.loads(results.read_text())
    assert saved["results"]["geo"] == {"haversine_pairs_per_s": 1}  # other benchmarks kept
    assert saved["results"]["gpu_check"]["phases"]["trl"]["rollouts_per_s"] == ph["trl"]["rollouts_per_s"]
    assert json.loads((tmp_path / "run.json").read_text())["phases_ok"] == doc["phases_ok"]


def test_3b_shape_has_the_published_parameter_count(gc):
    shaped = sys.modules["_shaped_model"]
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from geospot.models.tiny import SPECIAL_TOKENS

    ids = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    cfg = AutoConfig.for_model("qwen2_5_vl", **shaped.model_config(shaped.SHAPES["qwen2.5-vl-3b"], ids))
    with torch.device("meta"):  # shapes only, no memory
        model = AutoModelForImageTextToText.from_config(cfg, dtype=torch.bfloat16)
    # Qwen/Qwen2.5-VL-3B-Instruct: 3,754,622,976 parameters (tied embeddings), 669 M of them the ViT
    assert sum(p.numel() for p in model.parameters()) == 3_754_622_976
    assert sum(p.numel() for n, p in model.named_parameters() if "visual" in n) == 668_684_288
    assert cfg.text_config.hidden_size // cfg.text_config.num_attention_heads == 128


def test_padded_tokenizer_decodes_every_id(gc):
    shaped = sys.modules["_shaped_model"]
    tok = shaped.padded_tokenizer(700)
    assert len(tok) == 700
    assert tok.decode([699]) == "<|fill_699|>"
    ids = tok.encode("Latitude: 12.5")
    assert max(ids) < 600 and tok.decode(ids) == "Latitude: 12.5"  # real text never hits a filler


def test_a_failing_phase_is_recorded_and_the_time_guard_kills(gc, tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("forkserver")
    plan = gc.Plan(**{**gc.DRY, "folder": str(tmp_path / "no-such-model")})
    res = gc.run_phase(ctx, "sft_lora", plan, timeout_s=120)
    assert "error" in res and "no-such-model" in res["error"] and res["wall_s"] >= 0
    folder = gc.build_model("tiny", "cpu", "float32")["folder"]  # the tiny shape: cached, about a second
    t0 = time.perf_counter()
    res = gc.run_phase(ctx, "trl", gc.Plan(**{**gc.DRY, "folder": folder}), timeout_s=1.0)  # takes ~10 s
    assert res == {"error": "killed by the time guard after 1 s"} and time.perf_counter() - t0 < 30


def test_summary_ratios_and_failures(gc):
    doc = {"phases": {"build": {}, "grpo_torch": {"rollouts_per_s": 12.0}, "trl": {"rollouts_per_s": 4.0},
                      "grpo_vllm": {"error": "boom"}, "trl_vllm": {"skipped": "no vllm"}}}
    gc.summarise(doc)
    assert doc["ratio_rollouts_per_s"] == 3.0 and "ratio_vllm_rollouts_per_s" not in doc
    assert doc["phases_ok"] == ["build", "grpo_torch", "trl"] and doc["phases_failed"] == ["grpo_vllm"]


def test_readme_rows_name_the_card_and_show_failed_phases(tmp_path):
    from geospot import docs

    run = {"benchmark": "gpu_check", "dry_run": False, "device": "NVIDIA H100 80GB HBM3", "date": "2026-12-06",
           "torch": "2.11", "ratio_rollouts_per_s": 2.5, "phases_failed": ["grpo_vllm"],
           "phases": {"grpo_torch": {"rollouts_per_s": 25.0}, "trl": {"rollouts_per_s": 10.0},
                      "grpo_vllm": {"error": "ImportError"}, "trl_vllm": {"skipped": "no vllm"}}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"date": "2026-12-06", "machine": {}, "results": {"gpu_check": run}}))
    table = docs.benchmark_table(path)
    assert "| gpu_check | NVIDIA H100 80GB HBM3: GRPO step 8x8 rollouts/s, 3B shape, bf16 (peer: TRL GRPOTrainer) " \
           "| 25 | 10 | 2.5 |" in table
    assert "(peer: TRL + colocated vLLM) | error | skipped |  |" in table
    assert "phases that failed (errors in results.json) | grpo_vllm |" in table
    assert "on NVIDIA H100 80GB HBM3 (torch 2.11)" in table


def test_merge_puts_a_saved_run_into_results_json(gc, tmp_path):
    results, run = tmp_path / "results.json", tmp_path / "gpu_check.json"
    results.write_text(json.dumps({"date": "2026-11-26", "machine": {"cpus": 2}, "results": {"geo": {"a": 1}}}))
    run.write_text(json.dumps({"benchmark": "gpu_check", "device": "NVIDIA H200", "phases": {}}))
    assert gc.main(["--merge", str(run), "--results", str(results)]) == 0
    saved = json.loads(results.read_text())
    assert saved["machine"] == {"cpus": 2} and saved["results"]["geo"] == {"a": 1}
    assert saved["results"]["gpu_check"]["device"] == "NVIDIA H200"


def test_merge_refuses_a_missing_file_another_json_and_a_dry_run_in_one_sentence(gc, tmp_path, capsys):
    results = tmp_path / "results.json"
    other, dry = tmp_path / "other.json", tmp_path / "dry.json"
    other.write_text(json.dumps({"bench": "geo"}))
    dry.write_text(json.dumps({"benchmark": "gpu_check", "dry_run": True, "phases": {}}))
    for path, said in ((tmp_path / "nope.json", "cannot read it as a gpu_check run's JSON"),
                       (other, "not a gpu_check run's JSON"), (dry, "a --dry-run's JSON; give --results")):
        with pytest.raises(SystemExit) as e:
            gc.main(["--merge", str(path)])
        assert e.value.code == 2 and said in capsys.readouterr().err
    assert not results.exists()
    assert gc.main(["--merge", str(dry), "--results", str(results)]) == 0  # asked for by name: written
