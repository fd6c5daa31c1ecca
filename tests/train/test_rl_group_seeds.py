"""A resumed GRPO run keeps its own sampling scheme (lifecycle.Run.group_seeds, recorded in
config.json): a torchrun job samples each group from its own seed, a plain run one generator per
sampling call. A torchrun run resumed as one plain process switched schemes, so its rollouts from
the checkpoint on were not the uninterrupted run's."""

import json

from geospot.train import rl
from geospot.train.rl import RLConfig

MODEL = dict(model_name="tiny:qwen2_5_vl:tiny", lora_rank=0, device="cpu")


def cfg(log, **kw):
    return RLConfig(**{**dict(**MODEL, data="synthetic:n=16,size=28,seed=0", eval_n=0, batch_size=2, group_size=2,
                              max_tokens=12, save_every=1, log_images_every=0, log_path=str(log),
                              behavior_if_log_dir_exists="resume"), **kw})


def test_a_resume_keeps_the_runs_grpo_sampling_scheme(tmp_path, monkeypatch):
    log = tmp_path / "run"
    schemes = []
    real = rl.RolloutPipeline

    def pipeline(*args, **kw):
        schemes.append(kw["seed_groups"])
        return real(*args, **kw)

    monkeypatch.setattr(rl, "RolloutPipeline", pipeline)
    rl.run(cfg(log, max_steps=1))
    record = json.loads((log / "config.json").read_text())
    assert record["group_seeds"] is False and schemes == [False]  # a plain run: one generator per call
    record["group_seeds"] = True  # as a torchrun job records it
    (log / "config.json").write_text(json.dumps(record))
    rl.run(cfg(log, max_steps=2))
    assert schemes == [False, True]  # resumed in a plain process: the run's own scheme
    assert json.loads((log / "config.json").read_text())["group_seeds"] is True  # kept by the resume's record


def test_a_resume_that_had_to_take_per_group_seeds_records_them(tmp_path):
    """A plain run resumed under several processes samples from per-group seeds from there: config.json
    kept `false`, so a later plain resume switched schemes again."""
    from geospot.runs.folder import write_config
    from geospot.train.resume import write_resumed_config

    c = cfg(tmp_path)
    write_config(tmp_path, "rl", c, extra={"group_seeds": False})
    write_resumed_config(tmp_path, "rl", c, {}, 3, processes=2, group_seeds=True)
    assert json.loads((tmp_path / "config.json").read_text())["group_seeds"] is True
    write_resumed_config(tmp_path, "rl", c, {}, 4, processes=1, group_seeds=False)  # kept from here on
    assert json.loads((tmp_path / "config.json").read_text())["group_seeds"] is True
