import dataclasses
import subprocess
import sys

import pytest

from geospot.config import parse_overrides
from geospot.train.inherit import inherited_engine_fields
from geospot.train.rl import RLConfig, main


def test_help_documents_every_key(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for f in dataclasses.fields(RLConfig):
        assert f"  {f.name}=" in out, f.name
        assert f.metadata.get("help"), f"{f.name} has no help"


@pytest.mark.parametrize(
    "argv,key",
    [
        (["group_size=1"], "group_size"),
        (["learning_rate=0"], "learning_rate"),
        (["env_type=multi"], "env_type"),
        (["advantage=per_token"], "advantage"),
        (['turn_prompts=["a","no placeholder"]'], "turn_prompts"),
        (["lora_rank=-1"], "lora_rank"),
        (["batchsize=4"], "batch_size"),
        (["log_every=0"], "log_every"),
        (["env_type=telescoping", "zoom=0"], "zoom"),
        (["env_type=single", "zoom=2"], "zoom=2 is read by the telescoping turns only"),
        (["env_type=geohash", "reward=mixed"], "reward='mixed' has no effect"),
        # a key no env in play reads: refused, as zoom on single is (it used to train, silently unused)
        (["env_type=single", "teacher_forcing=0.5"], "teacher_forcing=0.5 is read by the geohash / hierarchical "
                                                     "turns only, and env_type=single has none"),
        (["env_type=telescoping", "geohash_chars=3,5,7"], "geohash_chars=(3, 5, 7) is read by the geohash turns only"),
        (["env_type=hierarchical", "geohash_answer=geohash"], "geohash_answer=geohash is read by the geohash turns"),
        (["env_type=geohash", "hier_partial_credit=0.25"], "and env_type=geohash has none; leave it out or set "
                                                           "env_type=hierarchical"),
        (["env_type=single", "hier_turns=country,coords"], "hier_turns=('country', 'coords') is read by the "
                                                           "hierarchical turns only"),
        (["env_type=single", "mixed_weights=0.5,0.5"], "mixed_weights=(0.5, 0.5) is read by reward=mixed only; "
                                                       "leave it out or set reward=mixed"),
        (["env_type=single", "mix_share=0.5"], "mix_share=0.5 is the share of images that play mix_env_type, which "
                                               "is not set"),
        (["env_type=single", "mix_env_type=hierarchical", "reasoning=true"],
         "reasoning=True works with env_type=single / telescoping only (mix_env_type=hierarchical is not)"),
        (["env_type=single", "mix_env_type=single"],
         "mix_env_type='single' is env_type=single already: mix in another env (telescoping, hierarchical, geohash) "
         "or leave it out"),
        (["mix_env_type=telescope"], "mix_env_type='telescope' is not an env: use one of single, telescoping, "
                                     "hierarchical, geohash (or leave it out: one env)"),
        (["loss_fn=ppo", "ppo_clip=nan"], "ppo_clip=nan must be in (0, 1)"),  # (they trained unclipped, silently)
        (["ppo_clip=1.5"], "ppo_clip=1.5 must be in (0, 1)"),
        (["batch_size=1e9"], "batch_size=1000000000 must be in 1..16,384 (held in memory)"),
        (["group_size=1e12"], "group_size=1000000000000 must be in 2..1,024"),
        # other tools' names for a key (difflib offered keep_checkpoints for checkpoint=, nothing for lr=)
        (["checkpoint=runs/sft"], "here it is load_checkpoint_path (load_checkpoint_path=runs/sft)"),
        (["lr=1e-4"], "here it is learning_rate (learning_rate=1e-4)"),
        (["model_name=tiny:qwen2_5_vl", "lora_alpha=nan"], "lora_alpha=nan must be > 0"),  # (a NaN loss, later)
        (["model_name=tiny:qwen2_5_vl", "lora_alpha=-4"], "lora_alpha=-4.0 must be > 0"),
    ],
)
def test_bad_config_fails_with_the_key_named(argv, key, capsys):
    assert main(argv) == 2
    assert key in capsys.readouterr().err


def test_existing_run_folder_refused_before_model_load(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert main([f"log_path={tmp_path}", "behavior_if_log_dir_exists=raise", "model_name=/nonexistent"]) == 2
    assert "behavior_if_log_dir_exists" in capsys.readouterr().err


def test_seed_keys_parse_and_engine_fields_inherit(tmp_path):
    cfg = parse_overrides(
        RLConfig,
        [
            "env_type=telescoping",
            "load_checkpoint_path=tinker://run/x",
            "advantage=trajectory",
            "tau_schedule=follow_error",
            "loss_fn=ppo",
            "batch_size=4",
            "group_size=4",
        ],
    )
    assert cfg.env_type == "telescoping" and cfg.advantage == "trajectory"
    # an SFT run folder's config.json supplies the model when the RL config leaves it unset
    ck = tmp_path / "sft" / "checkpoints" / "3"
    ck.mkdir(parents=True)
    (ck / "state.json").write_text('{"step": 3, "engine_path": "engine"}')
    (tmp_path / "sft" / "config.json").write_text(
        '{"kind": "sft", "config": {"model_name": "tiny:qwen2_5_vl:tiny", "lora_rank": 8, "data": "x"}}'
    )
    inh = inherited_engine_fields(str(tmp_path / "sft"))
    # ... and its data spec: RL continues on what the warm start learned unless data= is given
    assert inh == {"model_name": "tiny:qwen2_5_vl:tiny", "lora_rank": 8, "data": "x"}
    assert cfg.data is None
    ec = cfg.engine_config(inh)
    assert ec.model_name == "tiny:qwen2_5_vl:tiny" and ec.lora_rank == 8 and ec.lora_alpha == 32.0
    ec = dataclasses.replace(cfg, lora_rank=4).engine_config(inh)
    assert ec.lora_rank == 4  # an explicit key wins


def test_seed_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "geospot.train_rl", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "load_checkpoint_path" in out.stdout


def test_missing_sft_checkpoint_is_a_config_error(tmp_path, capsys):
    assert main([f"log_path={tmp_path / 'run'}", f"load_checkpoint_path={tmp_path / 'nope'}"]) == 2
    assert "load_checkpoint_path" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_engine_fields_follow_the_chain_sft_rl_rl(tmp_path):
    """An RL run records only what it set (model_name null): RL from it reads the model, rank and
    data from its start run, and a key the RL run set wins over its start run's."""
    def run(name, config):
        ck = tmp_path / name / "checkpoints" / "2"
        ck.mkdir(parents=True)
        (ck / "state.json").write_text('{"step": 2, "engine_path": "engine"}')
        import json

        (tmp_path / name / "config.json").write_text(json.dumps({"kind": "rl" if name != "sft" else "sft",
                                                                  "config": config}))
        return str(tmp_path / name)

    sft = run("sft", {"model_name": "tiny:qwen2_5_vl:tiny", "lora_rank": 0, "data": "synthetic:n=8"})
    rl1 = run("rl1", {"model_name": None, "lora_rank": None, "load_checkpoint_path": sft, "max_pixels": 3136})
    rl2 = run("rl2", {"model_name": None, "load_checkpoint_path": rl1})
    assert inherited_engine_fields(rl2) == {"model_name": "tiny:qwen2_5_vl:tiny", "lora_rank": 0,
                                            "data": "synthetic:n=8", "max_pixels": 3136}


def test_a_chain_of_relative_start_runs_reads_the_same_from_another_folder(tmp_path, monkeypatch):
    """rl1 was started in project/ from load_checkpoint_path=runs/sft, which trained on data=photos/: RL
    from rl1 in another folder still finds the model (it fell back to the default 3B hub model) and
    reads the start run's photos from project/, as the runs' started_in says."""
    import json

    project = tmp_path / "project"
    (project / "photos").mkdir(parents=True)

    def run(name, config):
        ck = project / "runs" / name / "checkpoints" / "2"
        ck.mkdir(parents=True)
        (ck / "state.json").write_text('{"step": 2, "engine_path": "engine"}')
        (project / "runs" / name / "config.json").write_text(json.dumps({
            "kind": "rl" if name != "sft" else "sft", "config": config, "started_in": str(project)}))

    run("sft", {"model_name": "tiny:qwen2_5_vl:tiny", "lora_rank": 0, "data": "photos/"})
    run("rl1", {"model_name": None, "lora_rank": None, "load_checkpoint_path": "runs/sft"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert inherited_engine_fields(str(project / "runs" / "rl1")) == {
        "model_name": "tiny:qwen2_5_vl:tiny", "lora_rank": 0, "data": str(project / "photos") + "/"}
    monkeypatch.chdir(project)  # where they began: the paths as written
    assert inherited_engine_fields("runs/rl1")["data"] == "photos/"
