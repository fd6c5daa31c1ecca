"""SFT: config, examples and weight normalisation (fast, no model)."""

import dataclasses
import re

import numpy as np
import pytest
from PIL import Image

from geospot import prompts
from geospot.config import ConfigError, parse_overrides
from geospot.data.types import Sample
from geospot.engines.config import EngineConfig
from geospot.engines.types import Datum, ModelInput
from geospot.train import sft
from geospot.train.sft import SFTConfig, build_messages, example_styles, normalise_weights


def _sample(lat=48.8566, lon=2.3522):
    return Sample("s0", Image.new("RGB", (8, 8)), lat, lon)


def _text(msg):
    return [c["text"] for c in msg["content"] if c["type"] == "text"][0]


def test_seed_command_keys_parse():
    cfg = parse_overrides(SFTConfig, ["model_name=Qwen/Qwen2.5-VL-3B-Instruct", "max_steps=50"])
    assert cfg.model_name == "Qwen/Qwen2.5-VL-3B-Instruct" and cfg.max_steps == 50
    assert cfg.engine_config() == EngineConfig(model_name="Qwen/Qwen2.5-VL-3B-Instruct")


def test_every_engine_key_is_a_sft_key_with_its_default():
    sft_fields = {f.name: f for f in dataclasses.fields(SFTConfig)}
    for f in dataclasses.fields(EngineConfig):
        assert f.name in sft_fields, f.name
        assert sft_fields[f.name].default == f.default, f.name


def test_every_key_has_help(capsys):
    assert sft.main(["--help"]) == 0
    out = capsys.readouterr().out
    for f in dataclasses.fields(SFTConfig):
        assert f.metadata.get("help"), f.name
        assert (f"  {f.name}=" in out) == (f.name not in SFTConfig.NOT_READ), f.name  # (GRPO's reward keys: not)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["learning_rate=-1e-4"], r"learning_rate=-0.0001 must be a positive"),
        (["lerning_rate=1e-4"], r"unknown config key 'lerning_rate'.*did you mean 'learning_rate'"),
        (["batch_size=6", "grad_accum=4"], r"grad_accum=4 must divide batch_size=6"),
        (["lora_rank=-2"], r"lora_rank=-2"),
        (["telescoping_decimals=1"], r"telescoping_decimals"),
        (["lr_schedule=step"], r"lr_schedule='step' is not one of"),
    ],
)
def test_bad_config_names_the_key(argv, match):
    with pytest.raises(ConfigError, match=match):
        parse_overrides(SFTConfig, argv)


def test_bad_config_fails_before_any_model_load(tmp_path, monkeypatch, capsys):
    import geospot.engines as engines

    def boom(*a, **k):
        raise AssertionError("model loaded")

    monkeypatch.setattr(engines, "make_engine", boom, raising=False)
    assert sft.main(["learning_rate=-1", f"log_path={tmp_path / 'r'}"]) == 2
    assert "learning_rate" in capsys.readouterr().err
    # a data path that does not exist: named, before the model
    missing = tmp_path / "no-such-data"
    rc = sft.main([f"data={missing}", "model_name=tiny:qwen2_5_vl", f"log_path={tmp_path / 'r2'}",
                   "behavior_if_log_dir_exists=raise"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "data=" in err and str(missing) in err
    assert not (tmp_path / "r2").exists()  # no empty run folder left behind


def test_single_turn_example():
    msgs = build_messages(_sample(), "single", SFTConfig(answer_decimals=1))
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert msgs[0]["content"][0]["type"] == "image"
    assert _text(msgs[0]) == prompts.SINGLE_TURN_PROMPT
    assert _text(msgs[1]) == "Latitude: 48.9\nLongitude: 2.4"


def test_telescoping_example_shows_previous_answers():
    msgs = build_messages(_sample(), "telescoping", SFTConfig(answer_decimals=2, telescoping_decimals=(0, 1)))
    assert [m["role"] for m in msgs] == ["user", "assistant"] * 3
    # only the first turn carries the image
    assert [any(c["type"] == "image" for c in m["content"]) for m in msgs[::2]] == [True, False, False]
    assert [_text(m) for m in msgs[1::2]] == [
        "Latitude: 49\nLongitude: 2",
        "Latitude: 48.9\nLongitude: 2.4",
        "Latitude: 48.86\nLongitude: 2.35",
    ]
    # the refine turn sees the coarse answer (49, 2) shown with 1 decimal, the final turn
    # sees the refine answer (48.9, 2.4) with 2 decimals, as the RL env shows guesses
    assert "(49.0, 2.0)" in _text(msgs[2])
    assert "(48.90, 2.40)" in _text(msgs[4])


def test_zoomed_telescoping_example_sees_a_thumbnail_then_the_photo():
    """zoom=2: the photos each turn sees are the env's (envs/telescoping.turn_images)."""
    msgs = build_messages(_sample(), "telescoping", SFTConfig(zoom=2))
    images = [[c["image"].size for c in m["content"] if c["type"] == "image"] for m in msgs[::2]]
    assert images == [[(4, 4)], [(8, 8)], []]
    with pytest.raises(ConfigError, match="zoom"):
        SFTConfig(zoom=0).validate()


def test_perturb_moves_the_point_by_the_drawn_distance():
    from geospot.geo import haversine_km
    from geospot.geo.perturb import perturb

    # along a meridian: bearing 0 (rng.random() = 0 for the bearing) moves north only
    class Fixed:
        def __init__(self, *vals):
            self.vals = list(vals)

        def random(self):
            return self.vals.pop(0)

    # Rayleigh draw with u = 1 - exp(-1/2): sqrt(-2 ln(1-u)) = 1 -> exactly scale_km
    u = 1 - np.exp(-0.5)
    lat, lon = perturb(10.0, 20.0, 1111.95, Fixed(u, 0.0))
    assert lon == pytest.approx(20.0, abs=1e-9)
    assert lat == pytest.approx(20.0, abs=1e-3)  # 1111.95 km = 10 degrees of arc
    # across the antimeridian, longitude wraps
    lat, lon = perturb(0.0, 179.0, 1111.95, Fixed(u, 0.25))  # due east
    assert lat == pytest.approx(0.0, abs=1e-9) and lon == pytest.approx(-171.0, abs=1e-3)
    # statistics: median of Rayleigh(s) = s * sqrt(2 ln 2) ~ 1.177 s
    rng = np.random.default_rng(0)
    d = [float(haversine_km(0.0, 0.0, *perturb(0.0, 0.0, 500.0, rng))) for _ in range(2000)]
    assert np.median(d) == pytest.approx(500.0 * np.sqrt(2 * np.log(2)), rel=0.06)


def test_telescoping_example_shows_a_noisy_previous_guess_and_trains_the_truth():
    """The fix for "later turns copy the previous guess": the shown guesses are off by a
    decreasing, seeded amount; the targets stay the truth at each turn's precision."""
    from geospot.geo import haversine_km
    from geospot.train.sft import example_rng

    cfg = SFTConfig(answer_decimals=2, telescoping_decimals=(0, 1), telescoping_noise_km=(1500.0, 300.0))
    s = _sample()
    far = []
    for i in range(64):
        msgs = build_messages(s, "telescoping", cfg, example_rng(0, 5, i))
        assert [_text(m) for m in msgs[1::2]] == [
            "Latitude: 49\nLongitude: 2",
            "Latitude: 48.9\nLongitude: 2.4",
            "Latitude: 48.86\nLongitude: 2.35",
        ]
        shown = [tuple(map(float, re.search(r"\(([-0-9.]+), ([-0-9.]+)\)", _text(m)).groups())) for m in msgs[2::2]]
        far.append([float(haversine_km(g[0], g[1], s.lat, s.lon)) for g in shown])
        # pure function of (seed, step, index): the same draw again gives the same text
        assert [_text(m) for m in build_messages(s, "telescoping", cfg, example_rng(0, 5, i))] == [
            _text(m) for m in msgs
        ]
    far = np.array(far)
    assert np.median(far[:, 0]) > 1000 and 100 < np.median(far[:, 1]) < 600  # refine sees a worse guess than final
    assert (far > 1).all()  # never the truth itself
    other = build_messages(s, "telescoping", cfg, example_rng(0, 6, 0))
    assert _text(other[2]) != _text(build_messages(s, "telescoping", cfg, example_rng(0, 5, 0))[2])


def test_telescoping_noise_is_validated():
    with pytest.raises(ConfigError, match="telescoping_noise_km"):
        SFTConfig(telescoping_noise_km=(100.0,)).validate()
    with pytest.raises(ConfigError, match="telescoping_noise_km"):
        SFTConfig(telescoping_noise_km=(-1.0, 0.0)).validate()


def test_example_styles_are_a_function_of_seed_and_step():
    a = example_styles("both", 64, seed=0, step=3)
    assert a == example_styles("both", 64, seed=0, step=3)
    assert a != example_styles("both", 64, seed=0, step=4)
    assert 16 < a.count("single") < 48
    assert example_styles("single", 3, 0, 0) == ["single"] * 3


def test_normalise_weights_makes_a_per_token_mean():
    # two datums with 2 and 3 target tokens (one image/prompt position at weight 0)
    d1 = Datum(
        ModelInput.from_ints([1, 2, 3]),
        {"target_tokens": np.array([2, 3, 4]), "weights": np.array([0, 1, 1], np.float32)},
    )
    d2 = Datum(
        ModelInput.from_ints([1, 2, 3, 4]),
        {"target_tokens": np.array([2, 3, 4, 5]), "weights": np.array([0, 1, 1, 1], np.float32)},
    )
    out, n = normalise_weights([d1, d2])
    assert n == 5
    np.testing.assert_allclose(out[0].loss_fn_inputs["weights"], [0, 0.2, 0.2])
    np.testing.assert_allclose(out[1].loss_fn_inputs["weights"], [0, 0.2, 0.2, 0.2])
    # summed NLL with these weights = mean NLL per target token: logprobs all -2 -> loss 2
    loss = -sum(
        float(np.dot(np.full(len(d.loss_fn_inputs["weights"]), -2.0), d.loss_fn_inputs["weights"])) for d in out
    )
    assert loss == pytest.approx(2.0)


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    """A KeyboardInterrupt inside training: the stopped line (where the run stands), no traceback."""
    def interrupted(cfg, **_):
        (tmp_path / "r" / "checkpoints" / "4").mkdir(parents=True)
        (tmp_path / "r" / "checkpoints" / "4" / "state.json").write_text('{"step": 4}')
        raise KeyboardInterrupt

    monkeypatch.setattr(sft, "train", interrupted)
    assert sft.main(["model_name=tiny:qwen2_5_vl", "lora_rank=0", f"log_path={tmp_path / 'r'}"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("geospot sft: stopped (Ctrl-C); the last checkpoint is step 4") and "Traceback" not in err
    assert err.rstrip().endswith("behavior_if_log_dir_exists=resume")


def test_the_held_out_table_shows_the_first_eval_and_the_latest_few(tmp_path):
    """Each eval printed every row so far: a 10k-step run with eval_every=100 wrote ~5,500 table lines.
    Now the first eval and the latest (SHOWN_EVALS rows); every eval stays in metrics.jsonl."""
    import io

    from geospot.runs.folder import read_jsonl

    err = io.StringIO()
    sft.train(SFTConfig(model_name="tiny:qwen2_5_vl:tiny", lora_rank=0, data="synthetic:n=200,size=56,seed=0",
                        batch_size=2, max_steps=8, eval_every=1, eval_n=2, eval_max_tokens=4, save_every=0,
                        log_path=str(tmp_path / "run"), behavior_if_log_dir_exists="raise"), stderr=err)
    last = err.getvalue().rsplit("-----\n", 1)[-1]
    rows = [line.split()[1] for line in last.splitlines() if line.startswith("step ") and "/" not in line.split()[1]]
    assert rows == ["0", "4", "5", "6", "7", "8"] and sft.SHOWN_EVALS == 6, (rows, err.getvalue()[-800:])
    evals = [r["step"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "eval/geoscore" in r]
    assert evals == list(range(9))
