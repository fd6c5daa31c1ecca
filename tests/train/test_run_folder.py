"""Run folders that cannot lie (issue 17 item 4) and finite data that ends a run cleanly, in
both loops: a failed start leaves no folder; `resume` refuses a folder with no checkpoint and a
config that changes what is trained, and records harmless changes; a non-repeating stream that
runs dry ends the run with its last checkpoint, status `done` and a note."""

import io
import json

import pytest

from geospot import engines
from geospot.config import ConfigError
from geospot.runs.checkpoint import latest_checkpoint, list_checkpoints
from geospot.runs.folder import read_jsonl, write_config
from geospot.runs.store import RunReader
from geospot.train.resume import RESUME_MAY_CHANGE, check_resume
from geospot.train.rl import RLConfig
from geospot.train.rl import run as rl_run
from geospot.train.sft import SFTConfig, train

MODEL = dict(model_name="tiny:qwen2_5_vl:tiny", lora_rank=0, device="cpu")
DATA = "synthetic:n=16,size=28,seed=0"
# 20 records, none held out: exactly 20 training samples, read once
FINITE = "synthetic:n=20,size=28,seed=0,repeat=false,val_frac=0,test_frac=0"


def sft_cfg(log, **kw):
    base = dict(**MODEL, data=DATA, eval_n=0, prompt_style="single", batch_size=2, max_steps=2, save_every=0,
                log_path=str(log), behavior_if_log_dir_exists="resume")
    return SFTConfig(**{**base, **kw})


def rl_cfg(log, **kw):
    base = dict(**MODEL, data=DATA, eval_n=0, batch_size=2, group_size=2, max_tokens=12, max_steps=2, save_every=0,
                log_images_every=0, log_path=str(log), behavior_if_log_dir_exists="resume")
    return RLConfig(**{**base, **kw})


# ---------------------------------------------------------------------------------------
# A failed start leaves nothing


def test_model_not_found_leaves_no_folder(tmp_path):
    log = tmp_path / "run"
    with pytest.raises(ConfigError, match="model_name"):
        train(sft_cfg(log, model_name=str(tmp_path / "no-such-model")), stderr=io.StringIO())
    assert not log.exists()
    # nor the folders the start made to hold it (runs/ of a first run in an empty folder); a folder
    # that was there before stays
    (tmp_path / "kept").mkdir()
    for log in (tmp_path / "runs" / "sft-x", tmp_path / "kept" / "a" / "b"):
        with pytest.raises(ConfigError, match="model_name"):
            train(sft_cfg(log, model_name=str(tmp_path / "no-such-model")), stderr=io.StringIO())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not any((tmp_path / "kept").iterdir())


@pytest.mark.parametrize("behavior", ["resume", "delete"])
def test_failure_after_config_json_leaves_no_folder(tmp_path, monkeypatch, behavior):
    """The engine fails after config.json is written (a fresh folder, or one `delete` emptied):
    the folder goes too, so nothing is left for a later `resume` to mistake for a run."""
    log = tmp_path / "run"
    if behavior == "delete":
        log.mkdir()
        (log / "old.txt").write_text("a previous run")

    def broken(_cfg):
        assert (log / "config.json").exists()  # the failure is after config.json, as the issue found it
        raise RuntimeError("out of memory")

    monkeypatch.setattr(engines, "make_engine", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        train(sft_cfg(log, behavior_if_log_dir_exists=behavior), stderr=io.StringIO())
    assert not log.exists()


def test_failure_on_resume_keeps_the_run(tmp_path, monkeypatch):
    log = tmp_path / "run"
    train(sft_cfg(log), stderr=io.StringIO())
    monkeypatch.setattr(engines, "make_engine", lambda _cfg: (_ for _ in ()).throw(RuntimeError("no GPU")))
    with pytest.raises(RuntimeError, match="no GPU"):
        train(sft_cfg(log, max_steps=3), stderr=io.StringIO())
    assert latest_checkpoint(log).name == "2"


# ---------------------------------------------------------------------------------------
# resume: only a run with a checkpoint, only with what it was trained on


def test_resume_refuses_a_changed_model_or_data_naming_saved_and_new(tmp_path):
    log = tmp_path / "run"
    train(sft_cfg(log), stderr=io.StringIO())
    before = (log / "config.json").read_text()
    with pytest.raises(ConfigError) as e:
        train(sft_cfg(log, model_name="tiny:qwen2_5_vl:small", data="synthetic:n=32,size=28"), stderr=io.StringIO())
    msg = str(e.value)
    assert "cannot resume with a changed data, model_name" in msg
    assert "model_name: saved 'tiny:qwen2_5_vl:tiny', now 'tiny:qwen2_5_vl:small'" in msg
    assert f"data: saved {DATA!r}, now 'synthetic:n=32,size=28'" in msg
    assert "load_checkpoint_path=" in msg and "\n" not in msg
    assert (log / "config.json").read_text() == before
    assert latest_checkpoint(log).name == "2"


@pytest.mark.parametrize("key,value", [("lora_rank", 4), ("prompt_style", "telescoping"), ("learning_rate", 1e-3),
                                       ("seed", 1), ("engine", "tinker")])
def test_resume_refuses_each_key_that_changes_training(tmp_path, key, value):
    log = tmp_path / "run"
    log.mkdir()
    (log / "checkpoints" / "2").mkdir(parents=True)  # check_resume needs only a checkpoint folder to exist
    (log / "checkpoints" / "2" / "state.json").write_text("{}")
    write_config(log, "sft", sft_cfg(log))
    with pytest.raises(ConfigError, match=f"changed {key} "):
        check_resume(log, "sft", sft_cfg(log, **{key: value}))
    # an SFT folder does not go on as RL: one sentence naming both ways on, whatever else differs
    with pytest.raises(ConfigError, match=r"is an SFT run, not an RL one: resume it with `geospot sft log_path=.*"
                                          r"`, or start RL from its weights with load_checkpoint_path="):
        check_resume(log, "rl", sft_cfg(log, max_steps=1))
    assert key not in RESUME_MAY_CHANGE


def test_an_sft_resume_may_change_its_eval_only_reasoning_budget(tmp_path):
    """SFT reads reasoning_max_tokens for its held-out eval only (it trains on the truth's answers):
    a resume that raises it, after evals cut off every answer, was refused as a change to training."""
    log = tmp_path / "run"
    (log / "checkpoints" / "2").mkdir(parents=True)
    (log / "checkpoints" / "2" / "state.json").write_text("{}")
    write_config(log, "sft", sft_cfg(log, reasoning=True, reasoning_max_tokens=64))
    assert check_resume(log, "sft", sft_cfg(log, reasoning=True, reasoning_max_tokens=100)) == {
        "reasoning_max_tokens": [64, 100]}
    assert "reasoning_max_tokens" not in RESUME_MAY_CHANGE  # RL samples its rollouts with it: refused there


def test_resume_below_the_step_reached_is_refused(tmp_path):
    log = tmp_path / "run"
    (log / "checkpoints" / "100").mkdir(parents=True)
    (log / "checkpoints" / "100" / "state.json").write_text("{}")
    write_config(log, "sft", sft_cfg(log, max_steps=400))
    with pytest.raises(ConfigError, match=r"at step 100 already, past max_steps=45: .* pass max_steps above 100"):
        check_resume(log, "sft", sft_cfg(log, max_steps=45))
    assert check_resume(log, "sft", sft_cfg(log, max_steps=100)) == {"max_steps": [400, 100]}  # ends `done` there


def test_resume_with_harmless_changes_records_and_prints_them(tmp_path):
    log = tmp_path / "run"
    train(sft_cfg(log, max_steps=2, log_every=10), stderr=io.StringIO())
    err = io.StringIO()
    result = train(sft_cfg(log, max_steps=3, log_every=5, save_every=1, grad_accum=2), stderr=err)
    assert result.steps == 3 and latest_checkpoint(log).name == "3"
    # (SFT has an lr schedule and no τ: its resume names the one it has)
    assert "resuming with max_steps changed: 2 -> 3 (recorded in config.json; the lr schedule now ends there)" \
        in err.getvalue()
    assert "resuming with log_every changed: 10 -> 5 (recorded in config.json)" in err.getvalue()
    rec = json.loads((log / "config.json").read_text())
    assert rec["config"]["max_steps"] == 3
    assert [r["step"] for r in rec["resumes"]] == [2]
    # grad_accum: the same step in micro-batches (another machine's memory), so a resume may change it
    assert rec["resumes"][0]["changed"] == {"grad_accum": [1, 2], "log_every": [10, 5], "max_steps": [2, 3],
                                            "save_every": [0, 1]}
    # resumed again with nothing changed: nothing new recorded
    train(sft_cfg(log, max_steps=3, log_every=5, save_every=1, grad_accum=2), stderr=io.StringIO())
    assert len(json.loads((log / "config.json").read_text())["resumes"]) == 1


# ---------------------------------------------------------------------------------------
# Finite data ends a run: last checkpoint, `done`, a note, no empty step


def assert_ended_with_the_data(log, steps, err):
    assert steps == 10  # 20 samples, 2 a step
    assert [int(p.name) for p in list_checkpoints(log)][-1] == 10
    assert RunReader(log).status()["status"] == "done"
    assert "data ran out at step 10:" in err
    assert max(r["step"] for r in read_jsonl(log / "metrics.jsonl")) == 10


def test_sft_ends_when_non_repeating_data_runs_out(tmp_path):
    log, err = tmp_path / "sft", io.StringIO()
    result = train(sft_cfg(log, data=FINITE, max_steps=50, save_every=4, keep_checkpoints=0), stderr=err)
    assert_ended_with_the_data(log, result.steps, err.getvalue())
    assert [int(p.name) for p in list_checkpoints(log)] == [4, 8, 10]
    assert all(r["target_tokens"] > 0 for r in read_jsonl(log / "metrics.jsonl") if "loss" in r)
    # resumed with more steps: the data is still spent, so no step runs and the run is done again
    err = io.StringIO()
    result = train(sft_cfg(log, data=FINITE, max_steps=60, save_every=4, keep_checkpoints=0), stderr=err)
    assert_ended_with_the_data(log, result.steps, err.getvalue())


def test_sft_last_partial_batch_is_the_last_step(tmp_path):
    log, err = tmp_path / "sft", io.StringIO()
    result = train(sft_cfg(log, data=FINITE, batch_size=6, max_steps=50), stderr=err)
    assert result.steps == 4 and latest_checkpoint(log).name == "4"  # 6 + 6 + 6 + 2
    assert "data ran out at step 4:" in err.getvalue()


@pytest.mark.parametrize("off_policy", [0, 1])  # 1: async GRPO draws the next step's samples on its own thread
def test_rl_ends_when_non_repeating_data_runs_out(tmp_path, capsys, off_policy):
    log = tmp_path / "rl"
    result = rl_run(rl_cfg(log, data=FINITE, max_steps=50, save_every=0, max_steps_off_policy=off_policy))
    assert_ended_with_the_data(log, result.steps, capsys.readouterr().err)
    assert sorted({r["step"] for r in read_jsonl(log / "metrics.jsonl") if "reward_mean" in r}) == list(range(1, 11))


def test_non_repeating_data_with_no_sample_fails_before_the_model_loads(tmp_path, monkeypatch):
    log = tmp_path / "run"
    monkeypatch.setattr(engines, "make_engine", lambda _cfg: pytest.fail("the model loaded"))
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"image": f"{i}.jpg", "lat": 91, "lon": 0}) + "\n" for i in range(3)))
    with pytest.raises(ConfigError, match="gives no sample to train on"):
        train(sft_cfg(log, data=f"jsonl:{rows},repeat=false,val_frac=0,test_frac=0"), stderr=io.StringIO())
    assert not log.exists()


def test_rl_async_resumed_run_trains_the_rest_of_the_data_then_ends(tmp_path, capsys):
    """Stopped at step 9 of 10 steps' data, then resumed with room for more: it trains step 10
    (the last samples) and ends there, each step logged once."""
    log = tmp_path / "rl"
    assert rl_run(rl_cfg(log, data=FINITE, max_steps=9, max_steps_off_policy=1)).steps == 9
    assert "data ran out" not in capsys.readouterr().err
    result = rl_run(rl_cfg(log, data=FINITE, max_steps=50, max_steps_off_policy=1))
    assert_ended_with_the_data(log, result.steps, capsys.readouterr().err)
    assert [r["step"] for r in read_jsonl(log / "metrics.jsonl") if "reward_mean" in r] == list(range(1, 11))


def test_metrics_with_damaged_bytes_or_a_torn_line_stay_readable(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1, "loss": 2.0}\ngarbage\xff\xfe\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    assert read_jsonl(path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]


def test_a_failed_start_leaves_a_run_started_beside_it_meanwhile(tmp_path, monkeypatch):
    """Two first runs in an empty folder: the one that fails removes its own folder and runs/ only if
    runs/ is empty by then, never the other's live run."""
    def broken(_cfg):
        (tmp_path / "runs" / "other").mkdir()
        (tmp_path / "runs" / "other" / "config.json").write_text("{}")
        raise RuntimeError("out of memory")

    monkeypatch.setattr(engines, "make_engine", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        train(sft_cfg(tmp_path / "runs" / "mine", behavior_if_log_dir_exists="raise"), stderr=io.StringIO())
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["other"]


def test_an_older_runs_unread_keys_neither_block_nor_change_its_resume(tmp_path):
    """An older geospot saved keys nothing in its run read: the demo's τ arms kept mix_share=0.75 with no
    mix env, and `rl load_checkpoint_path=<hierarchical run> env_type=single` inherited hier_*. They are
    refused when typed now, so taken from config.json they would make the run impossible to resume."""
    from geospot.train.resume import resume_config

    (tmp_path / "checkpoints" / "3").mkdir(parents=True)
    (tmp_path / "checkpoints" / "3" / "state.json").write_text("{}")
    started = {**rl_cfg(tmp_path).__dict__, "mix_share": 0.75, "hier_turns": ["country", "coords"],
               "hier_weights": [0.5, 0.5], "teacher_forcing": 1.0}
    (tmp_path / "config.json").write_text(json.dumps({"kind": "rl", "config": started}))
    typed = RLConfig(log_path=str(tmp_path), behavior_if_log_dir_exists="resume", max_steps=5)
    cfg, taken = resume_config(typed, {"log_path", "behavior_if_log_dir_exists", "max_steps"}, "rl")
    assert {"mix_share", "hier_turns", "hier_weights", "teacher_forcing"}.isdisjoint(taken)
    assert (cfg.mix_share, cfg.hier_turns, cfg.teacher_forcing) == (0.25, RLConfig().hier_turns, 0.0)
    cfg.validate()
    assert check_resume(tmp_path, "rl", cfg) == {"max_steps": [2, 5]}  # the one change typed; none refused


def test_resume_takes_the_saved_keys_the_command_line_leaves_out(tmp_path):
    """`geospot sft log_path=runs/x behavior_if_log_dir_exists=resume max_steps=9`: every key not
    typed is the run's own (model, data, lr, eval cadence), a typed one is a change."""
    from geospot.train.resume import resume_config

    started = SFTConfig(model_name="tiny:qwen2_5_vl", data="synthetic:n=64,size=56", learning_rate=1e-2, eval_every=2,
                        prompt_style="both", log_path=str(tmp_path))
    write_config(tmp_path, "sft", started)
    typed = SFTConfig(log_path=str(tmp_path), behavior_if_log_dir_exists="resume", max_steps=9)
    cfg, taken = resume_config(typed, {"log_path", "behavior_if_log_dir_exists", "max_steps"}, "sft")
    assert {"model_name", "data", "learning_rate"} <= taken and "max_steps" not in taken
    assert (cfg.model_name, cfg.data, cfg.learning_rate, cfg.eval_every, cfg.prompt_style) == (
        "tiny:qwen2_5_vl", "synthetic:n=64,size=56", 1e-2, 2, "both")
    assert cfg.max_steps == 9 and cfg.behavior_if_log_dir_exists == "resume"
    assert resume_config(typed, set(), "rl") == (typed, set())  # not an rl run: nothing taken
    fresh = SFTConfig(log_path=str(tmp_path), behavior_if_log_dir_exists="delete")
    assert resume_config(fresh, set(), "sft") == (fresh, set())


def test_resume_from_another_folder_reads_the_runs_relative_paths_from_where_it_started(tmp_path, monkeypatch):
    """A run started in proj/ with data=photos: resumed from elsewhere, `photos` is proj/photos, not
    the other folder's `photos` (which exists here, so nothing else would notice); typed from here
    the same folder is the same data, not a change; a spec that cannot be rewritten (quoted) is
    refused in one sentence that says where to resume from."""
    from geospot.train.resume import check_resume, resume_config

    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    for d in (proj / "photos", elsewhere / "photos", proj / "runs" / "a" / "checkpoints" / "2", proj / "sft"):
        d.mkdir(parents=True)
    log = proj / "runs" / "a"
    (log / "checkpoints" / "2" / "state.json").write_text("{}")
    started = SFTConfig(data="photos,max_side=224", model_name="tiny:qwen2_5_vl", load_checkpoint_path="sft",
                        log_path=str(log), behavior_if_log_dir_exists="resume")
    write_config(log, "sft", started, extra={"started_in": str(proj)})
    typed = SFTConfig(log_path=str(log), behavior_if_log_dir_exists="resume")
    given = {"log_path", "behavior_if_log_dir_exists"}
    monkeypatch.chdir(proj)
    assert resume_config(typed, given, "sft")[0].data == "photos,max_side=224"
    monkeypatch.chdir(elsewhere)
    cfg, _ = resume_config(typed, given, "sft")
    assert (cfg.data, cfg.load_checkpoint_path) == (f"{proj / 'photos'},max_side=224", str(proj / "sft"))
    assert check_resume(log, "sft", cfg) == {}  # the same data and start weights, spelled from here
    respelled = SFTConfig(**{**cfg.__dict__, "data": "../proj/photos/,max_side=224"})
    assert check_resume(log, "sft", respelled) == {}
    other = SFTConfig(**{**cfg.__dict__, "data": "photos,max_side=224"})  # elsewhere/photos: other data
    with pytest.raises(ConfigError, match="cannot resume with a changed data"):
        check_resume(log, "sft", other)
    write_config(log, "sft", SFTConfig(data="'photos',max_side=224"), extra={"started_in": str(proj)})
    with pytest.raises(ConfigError) as e:
        resume_config(typed, given, "sft")
    assert str(e.value) == (f"log_path={str(log)!r} was started in {proj}, and its data=\"'photos',max_side=224\" "
                            f"is a path relative to that folder; resume from there (cd {proj}), so the run reads "
                            "what it was started on")
    from geospot.train.resume import same_value  # the folder itself, named relative at its start, absolute now

    assert same_value("log_path", "runs/a", str(log), str(proj)) and not same_value("log_path", "runs/b", str(log),
                                                                                      str(proj))
    # absolute paths, synthetic and hub data, and a hub id that is no folder of the start's: as saved
    for data, model in [(str(proj / "photos"), "tiny:qwen2_5_vl"), ("synthetic:n=8;hf:a/b", "Qwen/Qwen2-VL-2B")]:
        write_config(log, "sft", SFTConfig(data=data, model_name=model), extra={"started_in": str(proj)})
        assert (resume_config(typed, given, "sft")[0].data, resume_config(typed, given, "sft")[0].model_name) == (
            data, model)
    write_config(log, "sft", SFTConfig(data="photos"))  # a run from before started_in was recorded
    assert resume_config(typed, given, "sft")[0].data == "photos"


def test_a_run_records_the_folder_it_was_started_in_and_keeps_it_on_resume(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "run"
    train(sft_cfg(log), stderr=io.StringIO())
    assert json.loads((log / "config.json").read_text())["started_in"] == str(tmp_path)
    train(sft_cfg(log, max_steps=3), stderr=io.StringIO())
    record = json.loads((log / "config.json").read_text())
    assert record["started_in"] == str(tmp_path) and record["resumes"][0]["changed"] == {"max_steps": [2, 3]}


def test_same_value_compares_what_path_keys_name(tmp_path, monkeypatch):
    """By hand: a run started in proj/ (holding photos/ and sft/), resumed from elsewhere/."""
    from geospot.train.resume import same_value

    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    for d in (proj / "photos", proj / "sft", elsewhere / "photos"):
        d.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    start = str(proj)
    assert same_value("data", "photos", str(proj / "photos"), start)  # the same folder, named from here
    assert not same_value("data", "photos", "photos", start)  # the same text here names elsewhere/photos
    assert same_value("data", "gone", "gone", start)  # nothing there to compare: the data's own error speaks
    assert same_value("load_checkpoint_path", "sft", str(proj / "sft"), start)
    assert same_value("model_name", "Qwen/Qwen2-VL-2B", "Qwen/Qwen2-VL-2B", start)  # a hub id is text
    assert same_value("model_name", "tiny:qwen3_vl", "tiny:qwen3_vl:tiny", start)  # a tiny name: family and size
    assert not same_value("model_name", "tiny:qwen3_vl", "tiny:qwen3_vl:small", start)
    assert not same_value("learning_rate", 1e-4, 2e-4, start) and same_value("learning_rate", 1e-4, 1e-4, start)


def test_a_run_with_relative_data_trains_on_when_resumed_from_another_folder(tmp_path, monkeypatch):
    """Started in proj/ on data=photos, resumed from elsewhere: it reads proj/photos and its data
    cursor takes the spec spelled from here (the cursor compared the raw strings: a traceback)."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "data"))
    from data_builders import make_samples, write_jsonl

    from geospot.train.command import run_command
    from geospot.train.sft import prepare_keys

    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_jsonl(str(proj / "photos" / "data.jsonl"), make_samples(8))
    monkeypatch.chdir(proj)
    keys = ["model_name=tiny:qwen2_5_vl:tiny", "lora_rank=0", "data=photos", "batch_size=2", "eval_n=0",
            "prompt_style=single", "save_every=2", "max_steps=2", "log_path=runs/rel"]
    assert run_command("sft", SFTConfig, "t", keys, prepare_keys, train) == 0
    monkeypatch.chdir(elsewhere)
    resume = [f"log_path={proj / 'runs' / 'rel'}", "behavior_if_log_dir_exists=resume", "max_steps=4"]
    assert run_command("sft", SFTConfig, "t", resume, prepare_keys, train) == 0
    assert latest_checkpoint(proj / "runs" / "rel").name == "4"


def test_both_loops_return_their_held_out_evals_by_step_across_a_resume(tmp_path):
    """RunResult.eval_history means the same in SFT and RL: step -> held-out metrics, the evals of
    the run's earlier part (before a resume) included, as its checkpoint keeps them."""
    for kind, cfg, run in [("sft", sft_cfg, train), ("rl", rl_cfg, rl_run)]:
        log = tmp_path / kind
        kw = dict(data="synthetic:n=32,size=28,seed=0,val_frac=0.25", eval_n=2, eval_every=1, save_every=1)
        first = run(cfg(log, max_steps=1, **kw))
        assert sorted(first.eval_history) == [0, 1], kind
        again = run(cfg(log, max_steps=2, **kw))
        assert sorted(again.eval_history) == [0, 1, 2], kind
        assert again.eval_history[1] == first.eval_history[1] and "median_km" in again.eval_history[2], kind


def test_an_rl_run_resumes_after_its_start_run_is_gone(tmp_path, capsys):
    """RL from an SFT checkpoint that is later pruned (the SFT run went on) or deleted: the RL run's
    own checkpoint holds its weights and its config.json its resolved engine keys, so it resumes."""
    import shutil

    from geospot.train.rl import main as rl_main

    sft = tmp_path / "sft"
    train(sft_cfg(sft, max_steps=2, save_every=1))
    rl = tmp_path / "rl"
    argv = [f"load_checkpoint_path={sft / 'checkpoints' / '1'}", f"log_path={rl}", "eval_n=0", "batch_size=2",
            "group_size=2", "max_tokens=12", "log_images_every=0", "behavior_if_log_dir_exists=resume"]
    assert rl_main([*argv, "max_steps=1"]) == 0
    saved = json.loads((rl / "config.json").read_text())["config"]
    assert (saved["model_name"], saved["lora_rank"], saved["data"]) == (MODEL["model_name"], 0, DATA)
    shutil.rmtree(sft)
    capsys.readouterr()
    assert rl_main([*argv, "max_steps=2"]) == 0, capsys.readouterr().err
    assert latest_checkpoint(rl).name == "2"
    # an SFT run continuing another's weights, the same
    first, second = tmp_path / "sft-a", tmp_path / "sft-b"
    train(sft_cfg(first, max_steps=1))
    train(sft_cfg(second, max_steps=1, load_checkpoint_path=str(first)))
    shutil.rmtree(first)
    assert train(sft_cfg(second, max_steps=2, load_checkpoint_path=str(first))).steps == 2


def test_extending_a_finished_run_says_the_lr_rises_again(tmp_path):
    """linear lr 1e-3 over 4 steps: step 4 trained at 1e-3 x (1 - 3/4); extended to 8 steps, step 5
    trains at 1e-3 x (1 - 4/8), twice that. Said in numbers, with the way to go on low instead."""
    log = tmp_path / "sft"
    train(sft_cfg(log, max_steps=4, learning_rate=1e-3), stderr=io.StringIO())
    err = io.StringIO()
    train(sft_cfg(log, max_steps=8, learning_rate=1e-3), stderr=err)
    assert ("lr: step 4 trained at 0.00025; step 5 trains at 0.0005, as lr_schedule=linear runs to max_steps=8 now. "
            "To go on at a low lr instead, start a new run") in err.getvalue()
    err = io.StringIO()
    train(sft_cfg(log, max_steps=9, learning_rate=1e-3, lr_schedule="linear"), stderr=err)  # still decaying: no word
    assert "lr: step" not in err.getvalue()
    # said where both loops resume (train/lifecycle.py): an RL run's lr keys read the same
    from geospot.train.lr import lr_rise
    from geospot.train.rl import RLConfig

    extended = RLConfig(learning_rate=1e-3, lr_schedule="linear", warmup_steps=0, max_steps=8)
    assert lr_rise(extended, 4, 4, 0.0).startswith("lr: step 4 trained at 0.00025; step 5 trains at 0.0005")
    # a time limit stretched: 3 s of 4 spent read the schedule at step 75 of 100; of 8 s, at step 37
    timed = RLConfig(learning_rate=1e-3, lr_schedule="linear", warmup_steps=0, max_steps=100, max_seconds=8.0)
    assert lr_rise(timed, 10, 100, 4.0, spent=3.0).startswith(
        "lr: step 10 trained at 0.00025; step 11 trains at 0.00063, as lr_schedule=linear runs to max_seconds=8 now")


def test_an_rl_run_of_an_older_geospot_with_null_engine_keys_resumes(tmp_path, capsys):
    """RL config.json used to hold its inherited engine keys as null: such a run resumes (its keys are
    its start run's, as they were), and a key typed otherwise than that is still refused."""
    from geospot.engines.config import ENGINE_KEYS
    from geospot.train.rl import main as rl_main

    sft = tmp_path / "sft"
    train(sft_cfg(sft, max_steps=1))
    rl = tmp_path / "rl"
    argv = [f"load_checkpoint_path={sft}", f"log_path={rl}", "eval_n=0", "batch_size=2", "group_size=2",
            "max_tokens=12", "log_images_every=0", "behavior_if_log_dir_exists=resume"]
    assert rl_main([*argv, "max_steps=1"]) == 0
    record = json.loads((rl / "config.json").read_text())
    record["config"].update({k: None for k in ENGINE_KEYS})  # as an older geospot wrote it
    (rl / "config.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert rl_main([*argv, "max_steps=2", "lora_rank=4"]) == 2
    assert "cannot resume with a changed lora_rank (lora_rank: saved 0, now 4)" in capsys.readouterr().err
    assert rl_main([*argv, "max_steps=2"]) == 0, capsys.readouterr().err
    assert latest_checkpoint(rl).name == "2"


def test_an_rl_run_failing_while_it_sets_up_is_marked_failed_and_lets_its_folder_go(tmp_path, monkeypatch):
    """A failure after the model loaded but before the first step (here the τ schedule; in life a corrupt
    checkpoint extra, a geocoder file) ends the run `failed`, its writer closed, and its folder free for
    another process (it stayed claimed for the rest of the process)."""
    import subprocess
    import sys

    from geospot.train import rl

    def broken(*a, **k):
        raise RuntimeError("no schedule")

    monkeypatch.setattr(rl, "make_tau_schedule", broken)
    log = tmp_path / "rl"
    with pytest.raises(RuntimeError, match="no schedule"):
        rl_run(rl_cfg(log, save_every=1))
    assert RunReader(log).status()["status"] == "failed"
    code = "import sys; from geospot.runs.folder import claim_run_folder; claim_run_folder(sys.argv[1]); print('ok')"
    out = subprocess.run([sys.executable, "-c", code, str(log)], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_rl_reads_the_lr_schedule_as_sft_does(tmp_path):
    """One dialect: lr_schedule / warmup_steps / min_lr_ratio / weight_decay mean in RL what they mean
    in SFT (RL had none; its lr was constant). Linear over 4 steps from 1e-3: 1e-3, 7.5e-4, 5e-4, 2.5e-4;
    RL's default stays constant."""
    log = tmp_path / "rl"
    rl_run(rl_cfg(log, max_steps=4, learning_rate=1e-3, lr_schedule="linear", weight_decay=0.01))
    lrs = [r["lr"] for r in read_jsonl(log / "metrics.jsonl") if "reward_mean" in r]
    assert lrs == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4], rel=1e-9)
    assert RLConfig().lr_schedule == "constant" and SFTConfig().lr_schedule == "linear"
