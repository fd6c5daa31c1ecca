"""A run folder passed as the model (eval / predict) or as RL's load_checkpoint_path lends its
env keys (envs.config.ENV_KEYS) to every key the command line does not give; hand-made
run folders, no model loads."""

import json
from dataclasses import replace

import pytest

from geospot.config import ConfigError, parse_overrides
from geospot.envs.kinds import ENV_TYPES
from geospot.eval.cli import EvalConfig, PredictConfig
from geospot.eval.run_defaults import describe_defaults, env_resume_keys, given_keys, with_run_defaults
from geospot.train.rl import RLConfig, env_from_start_run


def _run(path, kind, config, step=5):
    (path / "checkpoints" / str(step) / "engine").mkdir(parents=True)
    (path / "checkpoints" / str(step) / "state.json").write_text(json.dumps({"step": step, "engine_path": "engine"}))
    (path / "config.json").write_text(json.dumps({"kind": kind, "config": config}))
    return path


def _hier_rl(tmp_path):
    sft = _run(tmp_path / "sft", "sft", {"model_name": "tiny:qwen2_5_vl:tiny", "prompt_style": "all",
                                          "data": "synthetic:n=10,size=56", "geohash_chars": [2, 4, 6]})
    return _run(tmp_path / "rl", "rl", {"env_type": "hierarchical", "load_checkpoint_path": str(sft),
                                         "hier_turns": ["country", "region", "coords"], "hier_weights": [0.2, 0.3, 0.5],
                                         "teacher_forcing": 1.0, "max_tokens": 24})


def _eval(kv):
    """As `geospot eval` reads its keys: checked once the run's values fill the keys not typed."""
    cfg, record = with_run_defaults(parse_overrides(EvalConfig, kv, validate=False), given_keys(kv))
    cfg.validate()
    return cfg, record


def test_eval_of_a_hierarchical_run_asks_its_turns_and_weights(tmp_path):
    rl = _hier_rl(tmp_path)
    cfg, record = _eval([f"model={rl}", "data=synthetic:n=4"])
    assert cfg.env_type == "hierarchical"
    assert cfg.hier_turns == ("country", "region", "coords") and cfg.hier_weights == (0.2, 0.3, 0.5)
    # the run trained with teacher_forcing=1 (later turns told the truth): an eval of it is blind
    assert cfg.teacher_forcing == 0.0 and "teacher_forcing" not in record["from_run"]
    assert record["from_run"]["hier_turns"] == ("country", "region", "coords")
    assert record["from_run"]["env_type"] == "hierarchical" and record["overridden"] == {}
    assert "geohash_chars" not in record["from_run"]  # the run's value is the default: nothing to say


def test_a_key_on_the_command_line_wins_and_is_recorded_as_overridden(tmp_path):
    rl = _hier_rl(tmp_path)
    cfg, record = _eval([f"model={rl}", "data=synthetic:n=4", "hier_partial_credit=0.5", "hier_weights=0.1,0.1,0.8"])
    assert (cfg.env_type, cfg.hier_partial_credit, cfg.hier_weights) == ("hierarchical", 0.5, (0.1, 0.1, 0.8))
    assert cfg.hier_turns == ("country", "region", "coords")  # not given: still the run's (3 turns, 3 weights)
    assert record["overridden"] == {"hier_weights": (0.1, 0.1, 0.8)}  # hier_partial_credit: the run had none
    assert "overridden on the command line: hier_weights=(0.1, 0.1, 0.8)" in describe_defaults(record)
    # asked another way, the run's hierarchical keys are not taken, and typing one is a mistake said as such
    cfg, record = _eval([f"model={rl}", "data=synthetic:n=4", "env_type=single"])
    assert (cfg.env_type, cfg.hier_weights) == ("single", EvalConfig().hier_weights)
    assert record["overridden"] == {"env_type": "single"} and "hier_turns" not in record["from_run"]
    with pytest.raises(ConfigError, match=r"^hier_partial_credit=0.5 is read by the hierarchical turns only, and "
                                          r"env_type=single has none; leave it out or set env_type=hierarchical$"):
        _eval([f"model={rl}", "data=synthetic:n=4", "hier_partial_credit=0.5", "env_type=single"])
    # teacher_forcing typed for an eval is taken as typed (an oracle study), never from the run, and said so:
    # on stderr, and in the summary's `sampling`, which --compare sets beside a blind eval's
    from geospot.eval.cli_config import oracle_note, sampling_words

    cfg, record = _eval([f"model={rl}", "data=synthetic:n=4", "teacher_forcing=0.5"])
    assert cfg.teacher_forcing == 0.5
    assert oracle_note(cfg) == ("teacher_forcing=0.5: later turns are told the truth, so this is an oracle study, "
                                "not a blind eval")
    assert oracle_note(EvalConfig(model="tiny:qwen2_5_vl:tiny", env_type="hierarchical")) == ""
    assert sampling_words(cfg) == "greedy with teacher_forcing=0.5 (later turns told the truth)"
    assert sampling_words(_eval([f"model={rl}", "data=synthetic:n=4"])[0]) == "greedy"
    from geospot.eval.compare import compare_table

    table = compare_table({"blind": {"median_km": 900.0}, "forced": {"median_km": 300.0}},
                          asked={"blind": {"sampling": "greedy"}, "forced": {"sampling": sampling_words(cfg)}})
    assert "the rows differ in sampling: greedy, greedy with teacher_forcing=0.5 (later turns told the truth)" in table
    # a prediction has no truth to tell: refused, before any model loads
    kv = [f"model={rl}", "teacher_forcing=0.5"]
    with pytest.raises(ConfigError, match=r"^teacher_forcing=0.5 is a training aid that tells a later turn the true "
                                          r"answer, which a prediction does not have .*; leave it out$"):
        with_run_defaults(parse_overrides(PredictConfig, kv, validate=False), given_keys(kv))[0].validate()


def test_a_training_eval_is_blind():
    from geospot.envs.config import blind
    from geospot.train.rl import RLConfig

    cfg = RLConfig(env_type="hierarchical", teacher_forcing=1.0, hier_partial_credit=0.25)
    assert (blind(cfg).teacher_forcing, blind(cfg).hier_partial_credit) == (0.0, 0.25)
    plain = RLConfig(env_type="hierarchical")
    assert blind(plain) is plain


def test_predict_takes_the_same_keys(tmp_path):
    rl = _hier_rl(tmp_path)
    kv = [f"model={rl / 'checkpoints' / '5'}"]
    cfg, _ = with_run_defaults(parse_overrides(PredictConfig, kv), given_keys(kv))
    assert cfg.env_type == "hierarchical" and cfg.hier_turns == ("country", "region", "coords")


def test_an_sft_run_of_all_styles_is_asked_single(tmp_path):
    sft = _run(tmp_path / "sft", "sft", {"prompt_style": "all", "hier_weights": [0.1, 0.2, 0.3, 0.4]})
    cfg, record = _eval([f"model={sft}", "data=synthetic:n=4"])
    assert cfg.env_type == "single" and record["trained_styles"] == list(ENV_TYPES)  # every env, in the kinds' order
    assert cfg.hier_weights == EvalConfig().hier_weights and "hier_weights" not in record["from_run"]  # unread
    cfg, record = _eval([f"model={sft}", "data=synthetic:n=4", "env_type=hierarchical"])
    # asked its way: still not the run's (an SFT run never read hier_weights; an older one saved them)
    assert cfg.hier_weights == EvalConfig().hier_weights and "hier_weights" not in record["from_run"]


def test_rl_from_an_older_sft_run_takes_none_of_what_it_saved_unread(tmp_path):
    """An SFT run saved teacher_forcing=0.5 and hier_weights (sft took them without a word then):
    `rl load_checkpoint_path=<it>` trained with them, said as "from the run"."""
    sft = _run(tmp_path / "sft", "sft", {"model_name": "tiny:qwen2_5_vl:tiny", "prompt_style": "hierarchical",
                                          "teacher_forcing": 0.5, "hier_weights": [0.1, 0.1, 0.1, 0.7],
                                          "hier_turns": ["country", "region", "city", "coords"]})
    argv = [f"load_checkpoint_path={sft}"]
    cfg = env_from_start_run(parse_overrides(RLConfig, argv), given_keys(argv))
    assert cfg.env_type == "hierarchical" and (cfg.teacher_forcing, cfg.hier_weights) == (0.0, ())


def test_rl_from_a_run_continues_its_env_unless_told(tmp_path):
    rl = _hier_rl(tmp_path)
    argv = [f"load_checkpoint_path={rl}", "hier_partial_credit=0.25"]  # a hierarchical key: the run's env reads it
    cfg = env_from_start_run(parse_overrides(RLConfig, argv, validate=False), given_keys(argv))
    cfg.validate()
    assert cfg.env_type == "hierarchical" and cfg.hier_turns == ("country", "region", "coords")
    assert (cfg.teacher_forcing, cfg.hier_partial_credit) == (1.0, 0.25)
    argv = [f"load_checkpoint_path={rl}", "env_type=geohash"]
    cfg = env_from_start_run(parse_overrides(RLConfig, argv), given_keys(argv))
    assert cfg.env_type == "geohash" and cfg.teacher_forcing == 1.0
    plain = RLConfig(load_checkpoint_path="tinker://somewhere")
    assert env_from_start_run(plain, set()) is plain  # not a local run: nothing to read


def test_a_resume_does_not_say_its_start_runs_line_and_a_typed_max_tokens_under_reasoning_is_noted(tmp_path,
                                                                                                   capsys):
    """A resume printed "load_checkpoint_path: from the run: nothing; overridden on the command line:
    env_type=geohash" before refusing the change; rl took max_tokens under reasoning=true without a word."""
    from geospot.train.rl import prepare_keys

    rl = _hier_rl(tmp_path)
    argv = [f"load_checkpoint_path={rl}", "env_type=geohash"]
    env_from_start_run(parse_overrides(RLConfig, argv), given_keys(argv), resumed={"log_path", "seed"})
    assert "overridden" not in capsys.readouterr().err  # the resume's own check refuses the change, in its words
    env_from_start_run(parse_overrides(RLConfig, argv), given_keys(argv))  # a new run from it: said
    assert "overridden on the command line: env_type=geohash" in capsys.readouterr().err
    argv = ["reasoning=true", "max_tokens=8", f"log_path={tmp_path / 'new'}"]
    prepare_keys(parse_overrides(RLConfig, argv), given_keys(argv), set())
    assert ("note: max_tokens is not used with reasoning=true: reasoning_max_tokens=256 is each turn's budget"
            in capsys.readouterr().err)


def test_a_label_env_eval_resumes_only_into_an_eval_of_the_same_keys(tmp_path):
    assert env_resume_keys(EvalConfig(env_type="single", hier_weights=(1.0, 0, 0, 0))) == {}
    hier = env_resume_keys(EvalConfig(env_type="hierarchical", teacher_forcing=1.0))
    assert hier["hier_turns"] == ["country", "region", "city", "coords"] and hier["teacher_forcing"] == 1.0
    assert json.loads(json.dumps(hier)) == hier  # equal to itself read back from config.json
    assert "mixed_weights" not in hier  # eval scores distances: the mixed reward changes nothing it asks
    other = env_resume_keys(EvalConfig(env_type="hierarchical", teacher_forcing=0.0))
    assert other != hier
    # the weights the env uses, so an eval recorded before they defaulted to empty (written out) is the same one
    assert hier["hier_weights"] == [0.2, 0.2, 0.2, 0.4] and hier["geohash_weights"] == [0.2, 0.3, 0.5]
    assert env_resume_keys(EvalConfig(env_type="hierarchical", hier_turns=("country", "coords")))["hier_weights"] == [
        pytest.approx(1 / 3), pytest.approx(2 / 3)]


def test_a_run_recorded_with_the_default_weights_written_out_takes_other_turns_default_weights(tmp_path):
    """Runs recorded before hier_weights / geohash_weights defaulted to empty hold (0.2, 0.2, 0.2, 0.4) and
    (0.2, 0.3, 0.5): read as left out, so other turns typed weigh by their defaults, and nothing is said
    to come from the run. A run's own other weights are still its own."""
    turns = ["country", "region", "city", "coords"]
    old = _run(tmp_path / "old", "rl", {"env_type": "hierarchical", "hier_turns": turns,
                                        "hier_weights": [0.2, 0.2, 0.2, 0.4], "geohash_weights": [0.2, 0.3, 0.5]})
    cfg, record = _eval([f"model={old}", "data=synthetic:n=4", "hier_turns=country,coords"])
    assert cfg.hier_weights == () and "hier_weights" not in record["from_run"]
    cfg, record = _eval([f"model={old}", "data=synthetic:n=4"])
    assert cfg.hier_weights == () and "hier_weights" not in record["from_run"]
    own = _run(tmp_path / "own", "rl", {"env_type": "hierarchical", "hier_weights": [0.1, 0.1, 0.1, 0.7]})
    assert _eval([f"model={own}", "data=synthetic:n=4"])[0].hier_weights == (0.1, 0.1, 0.1, 0.7)


def test_rl_from_an_sft_run_names_what_it_inherits(tmp_path, capsys):
    """`rl load_checkpoint_path=<sft run> env_type=telescoping`: the model and data come from the run
    and the line says so (it read 'from the run: nothing')."""
    sft = _run(tmp_path / "sft", "sft", {"model_name": "tiny:qwen2_5_vl:tiny", "lora_rank": 4,
                                          "data": "synthetic:n=10,size=56", "prompt_style": "single"})
    argv = [f"load_checkpoint_path={sft}", "env_type=telescoping"]
    env_from_start_run(parse_overrides(RLConfig, argv), given_keys(argv))
    err = capsys.readouterr().err
    assert "from the run: model_name=tiny:qwen2_5_vl:tiny, lora_rank=4, data=synthetic:n=10,size=56" in err
    assert "overridden on the command line: env_type=telescoping" in err


def test_a_resumed_runs_own_keys_are_not_said_to_be_typed(tmp_path, capsys):
    """`rl log_path=<rl run> behavior_if_log_dir_exists=resume`: env_type=telescoping came from the
    run's own config.json, not the command line; it said "overridden on the command line"."""
    sft = _run(tmp_path / "sft", "sft", {"model_name": "tiny:qwen2_5_vl:tiny", "lora_rank": 4,
                                          "data": "synthetic:n=10,size=56", "prompt_style": "single"})
    cfg = replace(parse_overrides(RLConfig, [f"load_checkpoint_path={sft}"]), env_type="telescoping")
    cfg = env_from_start_run(cfg, {"max_steps"}, resumed={"env_type", "load_checkpoint_path"})
    err = capsys.readouterr().err
    assert cfg.env_type == "telescoping" and "overridden" not in err
    assert "from the run: model_name=tiny:qwen2_5_vl:tiny" in err


def test_a_model_path_that_is_not_there_is_named_as_a_path():
    """runs/demo/rll (a typo) is a path, not a hub id (owner/name): no hub error text."""
    import pytest

    from geospot.config import ConfigError
    from geospot.eval.loading import engine_config_for

    with pytest.raises(ConfigError, match="model=runs/demo/rll: no such model folder"):
        engine_config_for("runs/demo/rll")


def test_a_folder_without_a_model_and_a_typo_below_a_local_folder_are_one_sentence(tmp_path, monkeypatch):
    """An empty folder (or one of other files) is no model: said, not `[Errno 2] …/config.json`
    after the model would load; runs/<typo> with a runs/ folder here is a path, not a hub id."""
    import pytest

    from geospot.config import ConfigError
    from geospot.eval.loading import engine_config_for

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"model=runs/empty: this folder holds no model \(it is empty: no config"):
        engine_config_for("runs/empty")
    (tmp_path / "runs" / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"holds no model \(it holds notes.txt: no config.json"):
        engine_config_for("runs/empty")
    with pytest.raises(ConfigError, match="model=runs/nosuch: no such model folder"):
        engine_config_for("runs/nosuch")
    assert engine_config_for("Qwen/Qwen2.5-VL-3B-Instruct")[0].model_name == "Qwen/Qwen2.5-VL-3B-Instruct"


def test_a_zoomed_telescoping_run_is_asked_with_its_zoom(tmp_path):
    """zoom changes what each turn sees: eval and predict of the run must show the same photos."""
    sft = _run(tmp_path / "sft", "sft", {"model_name": "tiny:qwen2_5_vl:tiny", "prompt_style": "both", "zoom": 2,
                                          "data": "synthetic:n=10,size=56"})
    rl = _run(tmp_path / "rl", "rl", {"env_type": "telescoping", "load_checkpoint_path": str(sft), "zoom": 2})
    for run, kv in ((rl, []), (sft, ["env_type=telescoping"])):
        cfg, record = _eval([f"model={run}", "data=synthetic:n=4", *kv])
        assert cfg.zoom == 2 and record["from_run"]["zoom"] == 2
    # the SFT run (prompt_style=both) is asked single-turn by default: zoom is neither taken nor said
    cfg, record = _eval([f"model={sft}", "data=synthetic:n=4"])
    assert cfg.env_type == "single" and cfg.zoom == 1 and "zoom" not in record["from_run"]
    kv = [f"model={rl}"]
    assert with_run_defaults(parse_overrides(PredictConfig, kv), given_keys(kv))[0].zoom == 2
    cfg, record = _eval([f"model={rl}", "data=synthetic:n=4", "zoom=1"])
    assert cfg.zoom == 1 and record["overridden"] == {"zoom": 1}


def test_reasoning_goes_with_the_run_where_its_env_can_reason(tmp_path, capsys):
    """A run that reasoned: GRPO from it reasons too (it had dropped the key), eval / predict ask
    it so; asked as hierarchical it is asked without (that env has no reasoning turns). A typed
    reasoning=true against a run's hierarchical env is refused in one sentence naming both."""
    import pytest

    from geospot.config import ConfigError

    sft = _run(tmp_path / "sft", "sft", {"model_name": "tiny:qwen2_5_vl:tiny", "prompt_style": "single",
                                          "data": "synthetic:n=10,size=56", "reasoning": True,
                                          "reasoning_max_tokens": 64})
    argv = [f"load_checkpoint_path={sft}"]
    cfg = env_from_start_run(parse_overrides(RLConfig, argv), given_keys(argv))
    assert (cfg.env_type, cfg.reasoning, cfg.reasoning_max_tokens) == ("single", True, 64)
    assert "reasoning=True, reasoning_max_tokens=64" in capsys.readouterr().err
    argv = [f"load_checkpoint_path={sft}", "env_type=hierarchical"]
    cfg = env_from_start_run(parse_overrides(RLConfig, argv), given_keys(argv))
    assert cfg.env_type == "hierarchical" and not cfg.reasoning
    cfg, record = _eval([f"model={sft}", "data=synthetic:n=4"])
    assert cfg.reasoning and record["from_run"]["reasoning"] is True
    default_budget = _run(tmp_path / "sft256", "sft", {"model_name": "tiny:qwen2_5_vl:tiny", "prompt_style": "single",
                                                       "data": "synthetic:n=10,size=56", "reasoning": True})
    # the budget a reasoning answer has is said, where it is the default too (max_tokens=24 alone misled)
    assert _eval([f"model={default_budget}", "data=synthetic:n=4"])[1]["from_run"]["reasoning_max_tokens"] == 256
    # max_tokens typed for a reasoning run changes nothing: said, not silently recorded as an override
    from geospot.eval.run_defaults import describe_defaults

    line = describe_defaults(_eval([f"model={default_budget}", "data=synthetic:n=4", "max_tokens=8"])[1])
    assert line.endswith("; max_tokens is not used with reasoning=true: reasoning_max_tokens=256 is each turn's budget")
    cfg, record = _eval([f"model={sft}", "data=synthetic:n=4", "env_type=hierarchical"])
    assert not cfg.reasoning and "reasoning" not in record["from_run"]

    (tmp_path / "h").mkdir()
    hier = _hier_rl(tmp_path / "h")
    for kv in ([f"model={hier}", "reasoning=true"], [f"model={hier}", "data=synthetic:n=4", "reasoning=true"]):
        config = PredictConfig if len(kv) == 2 else EvalConfig
        with pytest.raises(ConfigError, match=r"^reasoning=True works with env_type=single / telescoping only; set "
                           r"reasoning=false or env_type=single \(env_type=hierarchical, .* from the run .*rl\)$"):
            with_run_defaults(parse_overrides(config, kv), given_keys(kv))
    argv = [f"load_checkpoint_path={hier}", "reasoning=true"]
    with pytest.raises(ConfigError, match="reasoning=True works with env_type=single / telescoping only"):
        env_from_start_run(parse_overrides(RLConfig, argv), given_keys(argv))


def _rl_argv(argv):
    """As `geospot rl` reads its keys: checked once the start run's values fill the keys not typed."""
    cfg = env_from_start_run(parse_overrides(RLConfig, argv, validate=False), given_keys(argv))
    cfg.validate()
    return cfg


def test_a_typed_key_goes_with_the_runs_env_not_the_default_one(tmp_path):
    """zoom=2 beside a telescoping run, hier_weights for a 3-turn hierarchical run, a mix of single-turn
    groups into a telescoping run: each was refused against the defaults (env_type=single, 4 turns)."""
    sft = _run(tmp_path / "sft", "sft", {"model_name": "tiny:qwen2_5_vl:tiny", "prompt_style": "both",
                                          "data": "synthetic:n=10,size=56"})
    tele = _run(tmp_path / "tele", "rl", {"env_type": "telescoping", "load_checkpoint_path": str(sft)})
    cfg, record = _eval([f"model={tele}", "data=synthetic:n=4", "zoom=2"])
    assert (cfg.env_type, cfg.zoom, record["from_run"]["env_type"]) == ("telescoping", 2, "telescoping")
    kv = [f"model={tele}", "zoom=2"]
    cfg, _ = with_run_defaults(parse_overrides(PredictConfig, kv, validate=False), given_keys(kv))
    cfg.validate()
    assert (cfg.env_type, cfg.zoom) == ("telescoping", 2)
    cfg = _rl_argv([f"load_checkpoint_path={tele}", "zoom=2", "mix_env_type=single", "mix_share=0.5"])
    assert (cfg.env_type, cfg.zoom, cfg.mix_env_type, cfg.mix_share) == ("telescoping", 2, "single", 0.5)

    hier = _hier_rl(tmp_path / "h")  # hier_turns=country,region,coords
    assert _eval([f"model={hier}", "data=synthetic:n=4", "hier_weights=0.5,0.5,0"])[0].hier_weights == (0.5, 0.5, 0)
    assert _rl_argv([f"load_checkpoint_path={hier}", "hier_weights=0.1,0.2,0.7"]).hier_weights == (0.1, 0.2, 0.7)
    # two turns typed against the run's three weights: the weights named are the run's, and said to be
    with pytest.raises(ConfigError, match=r"^hier_weights=\(0.2, 0.3, 0.5\) needs one weight per turn of hier_turns "
                                          r"\(2\); give 2, or hier_weights= \(empty: each turn's default weight\) "
                                          r"\(.*hier_weights=\(0.2, 0.3, 0.5\) from the run .*rl\)$"):
        _eval([f"model={hier}", "data=synthetic:n=4", "hier_turns=country,coords"])
    # a typed key that is wrong whatever the run: said without the run's keys
    with pytest.raises(ConfigError, match=r"^zoom=0 must be in 1..8 \(1 = off; 2: the first turn sees a half-size "
                                          r"photo\)$"):
        _eval([f"model={tele}", "data=synthetic:n=4", "zoom=0"])


def test_rl_from_a_mixed_run_keeps_its_mix_unless_the_env_is_typed(tmp_path):
    sft = _run(tmp_path / "sft", "sft", {"model_name": "tiny:qwen2_5_vl:tiny", "prompt_style": "both",
                                          "data": "synthetic:n=10,size=56"})
    mix = _run(tmp_path / "mix", "rl", {"env_type": "single", "load_checkpoint_path": str(sft),
                                         "mix_env_type": "telescoping", "mix_share": 0.25})
    cfg = _rl_argv([f"load_checkpoint_path={mix}", "mix_share=0.75"])
    assert (cfg.env_type, cfg.mix_env_type, cfg.mix_share) == ("single", "telescoping", 0.75)
    cfg = _rl_argv([f"load_checkpoint_path={mix}"])
    assert (cfg.mix_env_type, cfg.mix_share) == ("telescoping", 0.25)
    cfg = _rl_argv([f"load_checkpoint_path={mix}", "env_type=telescoping"])  # another env: the mix was the run's
    assert (cfg.env_type, cfg.mix_env_type) == ("telescoping", None)
    # a telescoping-only stage after the mixed one (the quick demo's) recorded no mix: none is continued, though
    # the run it started from had one
    tele = _run(tmp_path / "tele", "rl", {"env_type": "telescoping", "load_checkpoint_path": str(mix),
                                           "mix_env_type": None, "mix_share": 0.25})
    cfg = _rl_argv([f"load_checkpoint_path={tele}"])
    assert (cfg.env_type, cfg.mix_env_type) == ("telescoping", None)
