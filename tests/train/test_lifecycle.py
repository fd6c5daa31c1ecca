"""The run lifecycle both loops share: one meaning per knob, one validator."""

import dataclasses

import pytest

from geospot.config import ConfigError, parse_overrides
from geospot.train.lifecycle import RUN_HELP, due
from geospot.train.rl import RLConfig
from geospot.train.sft import SFTConfig


def test_due_every_n_steps_and_at_the_end_zero_only_at_the_end():
    assert [d for d in range(1, 8) if due(3, d, last=d == 7)] == [3, 6, 7]
    assert [d for d in range(1, 8) if due(0, d, last=d == 7)] == [7]


@pytest.mark.parametrize("cls", [SFTConfig, RLConfig])
def test_shared_knobs_mean_the_same_in_both_loops(cls):
    fields = cls.__dataclass_fields__
    for key, help_ in RUN_HELP.items():
        assert fields[key].metadata["help"] == help_, key
    cfg = parse_overrides(cls, ["save_every=0", "eval_every=0", "keep_checkpoints=0"])  # 0 = only at the end / all
    assert (cfg.save_every, cfg.eval_every, cfg.keep_checkpoints) == (0, 0, 0)
    for bad in (["save_every=-1"], ["keep_checkpoints=-2"], ["max_seconds=-1"], ["eval_n=-1"], ["log_every=0"],
                ["adam_beta2=1"], ["adam_eps=0"], ["grad_clip_norm=-1"], ["warmup_steps=-1"], ["min_lr_ratio=2"],
                ["weight_decay=-1"], ["lr_schedule=step"]):
        with pytest.raises(ConfigError, match=bad[0].split("=")[0] + "="):
            parse_overrides(cls, bad)


OSV = "/work/shared/data/osv5m-samples"


def _data(cfg):
    from geospot.train.inputs import open_data

    stream, held_out, _ = open_data(cfg)
    stream.close()
    return held_out


@pytest.mark.skipif(not __import__("os").path.isdir(OSV), reason="needs the shared OSV-5M samples")
def test_a_separate_eval_set_is_held_out_whole(capsys, tmp_path):
    """8 labelled photos as eval_data: all 8 are evaluated (their 5 % val split holds none); the
    train data's own val split when eval_data is the data; one sentence when nothing is usable."""
    synth = "synthetic:n=200,size=56,seed=0"
    assert len(_data(SFTConfig(data=synth, eval_data=OSV, eval_n=20))) == 8
    # fewer than eval_n: said, with where they came from
    assert f"held-out eval: 8 images, not eval_n=20: eval_data={OSV!r} has no more usable sample" in \
        capsys.readouterr().err
    n = len(_data(SFTConfig(data=synth, eval_data=synth, eval_n=200)))
    assert n < 200  # the val split only
    assert (f"held-out eval: {n} images, not eval_n=200: the val split of data={synth!r} has no more usable sample "
            "(eval_data is the same as data, so it is data's val split)") in capsys.readouterr().err
    # eval_split=heldout: the val and the test ids, none of which training reads
    from geospot.data import split_of

    both = _data(SFTConfig(data=synth, eval_split="heldout", eval_n=200))
    assert len(both) > n and {split_of(s.id) for s in both} == {"val", "test"}
    assert f"not eval_n=200: the held-out ids (val + test) of data={synth!r}" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="eval_split=.train. must be one of val, test, heldout: the ids training"):
        SFTConfig(data=synth, eval_split="train").validate()
    assert _data(SFTConfig(data=OSV, eval_n=4)) == []  # 8 ids: an empty val split, said on stderr
    assert "no held-out eval: data=" in capsys.readouterr().err
    assert _data(SFTConfig(data=OSV, eval_data=OSV, eval_n=4)) == []  # eval_data given, the same: it says so
    assert "(eval_data is the same as data, so it is data's val split); give eval_data=<other labelled data>" in \
        capsys.readouterr().err
    (tmp_path / "labels.csv").write_text("id,latitude,longitude\nnope,1,2\n")
    with pytest.raises(ConfigError, match=r"eval_data=.* gives no usable sample \(missing_image 1\)"):
        _data(SFTConfig(data=synth, eval_data=str(tmp_path), eval_n=4))


def test_done_line_names_the_skips_by_reason():
    from pathlib import Path

    from geospot.train.lifecycle import RunResult

    assert RunResult(Path("runs/a"), 3, {}).done_line() == "done: 3 steps, run folder runs/a"
    line = RunResult(Path("runs/a"), 3, {}, skipped={"missing_image": 2, "bad_coords": 1}).done_line()
    assert line.startswith("done: 3 steps, run folder runs/a; data records skipped: missing_image 2, bad_coords 1")
    assert "pass" not in line
    line = RunResult(Path("runs/a"), 3, {}, skipped={"no_gps": 26}, passes=13).done_line()
    assert line.endswith("no_gps 26 (the first of each reason is named above; counted again on each pass over "
                         "the data)")


def test_a_stream_counts_the_passes_it_began_over_its_data():
    from geospot.data import open_stream

    with open_stream("synthetic:n=40,size=8,val_frac=0,test_frac=0", "train", 0, shuffle=False) as stream:
        assert stream.passes == 0
        for _ in range(100):  # 40 records per pass: the third pass has begun
            next(stream)
        assert stream.passes >= 3


def test_start_weights_of_another_shape_are_refused_before_the_model_loads(tmp_path):
    """A LoRA run's weights fit only a LoRA engine of its rank: lora_rank=0 (or another rank) is
    one sentence naming the key and the saved value."""
    import torch

    from geospot.engines.config import EngineConfig
    from geospot.train.inputs import check_start_weights

    (tmp_path / "engine").mkdir()
    torch.save({"engine_config": {"lora_rank": 4, "lora_targets": "all-linear", "train_vision": False}},
               tmp_path / "engine" / "state.pt")
    engine = str(tmp_path / "engine")
    check_start_weights(EngineConfig(lora_rank=4, lora_targets="all-linear"), engine, "runs/k3")
    with pytest.raises(ConfigError, match=r"lora_rank=0, but load_checkpoint_path='runs/k3' was trained with "
                                          r"lora_rank=4"):
        check_start_weights(EngineConfig(lora_rank=0), engine, "runs/k3")
    with pytest.raises(ConfigError, match="train_vision=True"):
        check_start_weights(EngineConfig(lora_rank=4, lora_targets="all-linear", train_vision=True), engine, "r")
    check_start_weights(EngineConfig(lora_rank=0), None, None)  # no start weights: nothing to check


def test_start_weights_of_another_model_are_refused_before_the_model_loads(tmp_path):
    """Another family (or size) has other weights: one sentence naming both models; another spelling
    of the same model (tiny:qwen3_vl:tiny, its folder) is accepted, and a model not at hand is not judged."""
    import torch

    from geospot.engines.config import EngineConfig
    from geospot.models.load import resolve_model_path
    from geospot.train.inputs import check_start_weights

    (tmp_path / "engine").mkdir()
    torch.save({"engine_config": {"model_name": "tiny:qwen3_vl", "lora_rank": 0}}, tmp_path / "engine" / "state.pt")
    engine = str(tmp_path / "engine")
    for same in ("tiny:qwen3_vl", "tiny:qwen3_vl:tiny", str(resolve_model_path("tiny:qwen3_vl")), "owner/not-here"):
        check_start_weights(EngineConfig(model_name=same, lora_rank=0), engine, "runs/q3")
    with pytest.raises(ConfigError, match=r"^model_name='tiny:qwen2_vl', but load_checkpoint_path='runs/q3' was "
                                          r"trained on 'tiny:qwen3_vl' \(a qwen3_vl model, not qwen2_vl\)"):
        check_start_weights(EngineConfig(model_name="tiny:qwen2_vl", lora_rank=0), engine, "runs/q3")
    with pytest.raises(ConfigError, match=r"\(a model of another size\).*set model_name='tiny:qwen3_vl'$"):
        check_start_weights(EngineConfig(model_name="tiny:qwen3_vl:small", lora_rank=0), engine, "runs/q3")


def test_a_batch_larger_than_the_data_is_said_once():
    """39 training images (synthetic n=40 less its val split) and batches of 64: every batch repeats
    images, said once before training goes on; batches of 32 fit and say nothing."""
    import io
    from types import SimpleNamespace

    from geospot.data import open_stream
    from geospot.train.lifecycle import Run

    def draws(batch_size):
        spec = "synthetic:n=40,size=28,seed=0"
        err = io.StringIO()
        with open_stream(spec, split="train", seed=0, repeat=True) as stream:
            run = Run(SimpleNamespace(data=spec), None, stream, [], None, None, None, None, stderr=err)
            sizes = [len(run.draw(step, batch_size)) for step in range(3)]
        return sizes, err.getvalue()

    sizes, said = draws(64)
    assert sizes == [64, 64, 64]  # the run goes on
    assert said.count("\n") == 1
    assert "batch_size=64 is more than the at most 39 images of data='synthetic:n=40,size=28,seed=0'" in said
    assert "lower batch_size to 39 or less" in said
    assert draws(32)[1] == ""
    # 64x the data and more: refused once a pass has shown its size, before the batch is drawn
    # (batch_size=1e9 held images until memory ran out, and a SIGTERM waited for the step for ever)
    from geospot.config import ConfigError

    with pytest.raises(ConfigError, match=r"^batch_size=2497 is 64x the at most 39 images of data="):
        draws(64 * 39 + 1)
    assert draws(64 * 39)[0] == [64 * 39] * 3  # (drawn in parts of 1,024, all of it)


def test_a_run_folder_being_trained_is_refused_to_a_second_process(tmp_path):
    """Another process writing `running` into the folder: resume / delete are refused with who it is;
    once that process is gone (killed without a word) the folder is free again."""
    import subprocess
    import sys
    import time

    from geospot.config import ConfigError
    from geospot.train.lifecycle import refuse_a_live_run

    run = tmp_path / "run"
    code = ("import sys, time; from geospot.runs.store import RunStore; s = RunStore(sys.argv[1]); "
            "s.set_status('running'); s.flush(); print('up', flush=True); time.sleep(60)")
    writer = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "up"
        with pytest.raises(ConfigError, match=rf"is being trained right now \(pid {writer.pid} on "):
            refuse_a_live_run(str(run))
    finally:
        writer.kill()
        writer.wait()
    time.sleep(0.1)
    refuse_a_live_run(str(run))  # its writer is gone: the folder may be resumed or deleted
    refuse_a_live_run(str(tmp_path / "nothing-here"))


def test_a_second_process_is_refused_while_the_first_is_still_starting(tmp_path):
    """The window before a run writes `running` (its model loading: seconds here, minutes for a 3B
    model): a second start in that folder, resume or delete, is refused at once and touches nothing;
    the first run's folder claim ends with it."""
    import subprocess
    import sys

    from geospot.train.sft import train

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")  # an earlier run's folder, being resumed by the first process
    code = ("import sys, time; from geospot.runs.folder import claim_run_folder; claim_run_folder(sys.argv[1]); "
            "print('up', flush=True); time.sleep(60)")
    first = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "up"
        for behavior in ("resume", "delete"):
            cfg = parse_overrides(SFTConfig, ["model_name=tiny:qwen2_5_vl", "data=synthetic:n=16,size=28",
                                              f"log_path={run}", f"behavior_if_log_dir_exists={behavior}"])
            with pytest.raises(ConfigError, match=r"is being started or trained right now by another process; wait "
                                                  r"for it to end or stop it \(Ctrl-C\), or choose another log_path"):
                train(cfg)
            assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json"]  # nothing deleted
    finally:
        first.kill()
        first.wait()
    # its claim went with it: this process may start over there (and its own second start is no other process)
    cfg = parse_overrides(SFTConfig, ["model_name=tiny:qwen2_5_vl:tiny", "data=synthetic:n=16,size=28", "lora_rank=0",
                                      "max_steps=1", "eval_n=0", f"log_path={run}",
                                      "behavior_if_log_dir_exists=delete"])
    assert train(cfg).steps == 1
    assert train(dataclasses.replace(cfg, max_steps=2, behavior_if_log_dir_exists="resume")).steps == 2


def test_delete_empties_the_run_folder_and_keeps_its_claim(tmp_path):
    from geospot.runs.folder import claim_run_folder, prepare_log_dir, release_run_folder

    run = tmp_path / "run"
    (run / "checkpoints" / "3").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    inode = claim_run_folder(run).stat().st_ino
    try:
        assert prepare_log_dir(run, "delete") == (run, False)
        assert list(run.iterdir()) == [] and run.stat().st_ino == inode  # the locked folder itself, emptied
    finally:
        release_run_folder(run)


@pytest.mark.parametrize("cls", [SFTConfig, RLConfig])
def test_under_torchrun_the_run_folder_is_named_with_the_engines_resolved_device(cls, monkeypatch):
    """RL's engine keys default to None (= the start run's): the process group is joined with the
    engine's resolved device, never RLConfig.device (None.startswith crashed on a GPU machine)."""
    from geospot import distributed
    from geospot.train import lifecycle

    seen = []

    class Group:
        def broadcast(self, value):
            return value

    def init(device="auto"):
        seen.append(device)
        device.startswith("cpu")  # what distributed.init asks of it on a GPU machine
        return Group()

    monkeypatch.setattr(distributed, "under_torchrun", lambda: True)
    monkeypatch.setattr(distributed, "init", init)
    cfg = parse_overrides(cls, ["model_name=tiny:qwen2_5_vl"])
    # (RL resolves its engine keys from the start run; any resolved EngineConfig stands in for that here)
    engine_config = dataclasses.replace(SFTConfig().engine_config(), device="cpu")
    name = lifecycle.run_folder_name(cfg, "rl", "tiny:qwen2_5_vl", engine_config)
    assert name.startswith("runs/rl-tiny-qwen2_5_vl-") and seen == ["cpu"]
