"""`geospot eval` and `geospot predict` share one settings base: the same keys, validated
the same way, so a bad value is one clean line and exit 2 from either command."""

import dataclasses
import math

import pytest
import torch
from eval_fakes import ScriptedEngine
from PIL import Image

from geospot.eval import cli
from geospot.eval.loading import engine_state_fields
from geospot.jsonutil import finite_json


def _image(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (16, 16), (200, 120, 40)).save(path)
    return path


def test_predict_and_eval_share_their_common_keys():
    shared = {f.name for f in dataclasses.fields(cli.SamplingConfig)}
    assert {"model", "batch_size", "samples", "max_tokens", "seed"} <= shared
    assert shared <= {f.name for f in dataclasses.fields(cli.EvalConfig)}
    assert shared == {f.name for f in dataclasses.fields(cli.PredictConfig)}


@pytest.mark.parametrize("bad, word", [("batch_size=0", "batch_size"), ("samples=-1", "samples"),
                                       ("max_tokens=0", "max_tokens"), ("device=tpu", "device=tpu is not a device"),
                                       ("base_model=tiny:qwen3_vl", "read only with model=tinker://"),
                                       ("samples=2 temperature=-1", "temperature=-1.0 must be > 0 with samples=2"),
                                       ("samples=2 temperature=nan", "temperature=nan must be > 0"),
                                       ("checkpoint=runs/x", "here it is model (model=runs/x)"),
                                       ("temperature=0.7", "temperature=0.7 is read with samples=k > 0 only")])
def test_predict_bad_value_is_a_clean_error_like_eval(tmp_path, capsys, bad, word):
    engine = ScriptedEngine(lambda image, text, turn, j: "Latitude: 1\nLongitude: 2")
    assert cli.predict_main(["model=fake", str(_image(tmp_path)), *bad.split()], engine=engine) == 2
    err = capsys.readouterr().err
    assert err.startswith("geospot predict:") and word in err and "Traceback" not in err
    assert engine.calls == 0  # rejected before any sampling
    assert cli.eval_main(["model=fake", "data=synthetic:n=4", *bad.split()]) == 2
    err = capsys.readouterr().err
    assert err.startswith("geospot eval:") and word in err


def test_a_mistyped_option_or_one_without_its_value_is_said_with_the_options(tmp_path, capsys):
    """`--jsn` was taken for a photo ("no such image or folder"); `--csv` at the end suggested out.html."""
    assert cli.predict_main(["model=x", str(tmp_path), "--jsn"]) == 2
    assert capsys.readouterr().err == ("geospot predict: unknown option --jsn (the options: --csv, --greedy, --json, "
                                       "--map; --help lists the keys)\n")
    assert cli.eval_main(["--compare", str(tmp_path), "--jsn"]) == 2
    assert "unknown option --jsn (the options: --compare, --greedy, --json;" in capsys.readouterr().err
    assert cli.predict_main(["model=x", str(tmp_path), "--csv"]) == 2
    assert "--csv needs a value (e.g. --csv predictions.csv)" in capsys.readouterr().err


def test_predict_json_writes_null_for_an_unparsed_answer(tmp_path, capsys):
    engine = ScriptedEngine(lambda image, text, turn, j: "no idea")
    assert cli.predict_main(["model=fake", str(_image(tmp_path)), "--json"], engine=engine) == 0
    out = capsys.readouterr().out.strip()
    assert '"latitude": null' in out and "NaN" not in out


def test_predict_prepares_photos_as_the_stream_does_and_crops_squares_when_asked(tmp_path):
    from geospot.eval.predictor import prepared_samples

    wide = tmp_path / "wide.jpg"
    Image.new("RGB", (90, 50), (10, 20, 30)).save(wide)
    turned = tmp_path / "turned.jpg"  # stored 40x60, EXIF: rotate 90 degrees to view
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 60), (200, 0, 0)).save(turned, exif=exif)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    paths = [wide, turned, tmp_path / "broken.jpg"]
    samples, skipped = prepared_samples([(str(p), p) for p in paths])
    assert [s.image.size for s in samples] == [(90, 50), (60, 40)]  # upright, full size
    assert len(skipped) == 1 and skipped[0][0].endswith("broken.jpg") and skipped[0][1].startswith("decode_error")
    samples, _ = prepared_samples([(str(p), p) for p in paths], square=True)
    assert [s.image.size for s in samples] == [(50, 50), (40, 40)]  # the centre square


def test_finite_json_maps_non_finite_numbers_to_null():
    x = {"a": math.nan, 1: [math.inf, 2.5, (-math.inf, "s")], "n": torch.tensor(3.0)}
    assert finite_json(x) == {"a": None, "1": [None, 2.5, [None, "s"]], "n": 3.0}


def test_engine_state_config_reads_only_the_engine_config(tmp_path):
    """state.pt written as the local engine writes it (torch.save's zip format, optimizer
    moments included) yields its EngineConfig fields; unknown keys are dropped."""
    torch.save({"optimizer": {"state": {0: {"exp_avg": torch.randn(64, 64)}}}, "step": 3,
                "engine_config": {"model_name": "tiny:qwen2_5_vl", "lora_rank": 4, "not_a_field": 1}},
               tmp_path / "state.pt")
    assert engine_state_fields(str(tmp_path)) == {"model_name": "tiny:qwen2_5_vl", "lora_rank": 4}
    assert engine_state_fields(str(tmp_path / "missing")) == {}


def test_eval_folders_are_named_by_the_data_folder_not_its_path(tmp_path):
    """`data=../shared/…/osv5m-samples/` used to name a hidden `.._shared_…` folder."""
    run = tmp_path / "runs" / "demo" / "rl"
    ck = run / "checkpoints" / "300"
    cfg = cli.EvalConfig(model=str(run), data="../shared/data/osv5m-samples/", env_type="telescoping")
    assert cli.default_out(cfg, str(ck)) == run / "eval" / "osv5m-samples-telescoping-step300"
    for data, name in (("/abs/path/labelled", "labelled"), ("labelled/", "labelled"),
                       ("synthetic:n=40,size=56", "synthetic_n_40_size_56"), ("hf:osv5m/osv5m", "hf_osv5m_osv5m"),
                       ("a/photos.csv;../b/more", "photos.csv_more")):
        out = cli.default_out(dataclasses.replace(cfg, data=data, env_type="single"), str(ck))
        assert out.name == f"{name}-single-step300", data
    assert cli.default_out(dataclasses.replace(cfg, model="export/demo-rl"), None) == (
        cli.Path("runs") / "eval" / "demo-rl-osv5m-samples-telescoping")
    # an oracle study says so in its name (--compare shows it as the row's): it took a best mark unnamed
    oracle = dataclasses.replace(cfg, env_type="hierarchical", teacher_forcing=1.0)
    assert cli.default_out(oracle, str(ck)).name == "osv5m-samples-hierarchical-teacher_forcing1-step300"


def test_predict_finds_the_photos_of_a_data_folder_in_its_subfolder(tmp_path):
    """labels.csv + images/: `geospot predict model=… <that folder>` used to find no image."""
    from geospot.config import ConfigError
    from geospot.eval.predictor import image_paths

    data = tmp_path / "labelled"
    (data / "images").mkdir(parents=True)
    (data / "labels.csv").write_text("id,latitude,longitude\na,1,2\n")
    for name in ("b.jpg", "a.png"):
        Image.new("RGB", (8, 8)).save(data / "images" / name)
    assert [p.name for p in image_paths([str(data)])] == ["a.png", "b.jpg"]
    Image.new("RGB", (8, 8)).save(data / "top.jpg")  # photos at the top too: every photo, the top's first
    assert [p.name for p in image_paths([str(data)])] == ["top.jpg", "a.png", "b.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no images found in .*empty or its subfolders"):
        image_paths([str(tmp_path / "empty")])
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "shard-000.tar").write_bytes(b"")  # what `eval` reads, not predict
    with pytest.raises(ConfigError, match=r"shards holds tar or parquet shards, which predict does not open: score "
                                          r"them with geospot eval model=<model> data=.*shards$"):
        image_paths([str(tmp_path / "shards")])


def test_a_phones_upper_case_names_are_pointed_at_when_a_pattern_or_name_misses(tmp_path):
    """IMG_0001.JPG from a phone: `*.jpg` (quoted, so the shell left it) and img_0001.jpg find nothing
    on Linux; the sentence names the file that matches in another case. A quoted pattern that does
    match is read as the shell would have expanded it."""
    from geospot.data import load_samples
    from geospot.data.spec import SpecError
    from geospot.eval.predictor import image_paths

    for name in ("IMG_0001.JPG", "IMG_0002.JPG"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    with pytest.raises(FileNotFoundError, match=r"\*\.jpg: no such image or folder; 2 files, e\.g\. .*IMG_0001\.JPG, "
                                                r"match it in another case: names are case-sensitive here$"):
        image_paths([str(tmp_path / "*.jpg")])
    with pytest.raises(FileNotFoundError, match=r"img_0002\.jpg: no such image or folder; .*IMG_0002\.JPG matches it"):
        image_paths([str(tmp_path / "img_0002.jpg")])
    assert [p.name for p in image_paths([str(tmp_path / "*.JPG")])] == ["IMG_0001.JPG", "IMG_0002.JPG"]
    with pytest.raises(SpecError, match=r"no files match .*; 2 files, e\.g\. .*IMG_0001\.JPG, match it in another"):
        load_samples(str(tmp_path / "*.jpg"), split="all")
    (tmp_path / "2023").mkdir()  # a quoted pattern naming folders walks them, as the shell's expansion would
    Image.new("RGB", (8, 8)).save(tmp_path / "2023" / "a.jpg")
    assert [p.name for p in image_paths([str(tmp_path / "20*")])] == ["a.jpg"]
    with pytest.raises(SpecError) as e:  # a folder that is there, with no shards: no "another case" for itself
        load_samples(f"wds:{tmp_path / '2023'}", split="all")
    assert "another case" not in str(e.value)
    (tmp_path / "labels.csv").write_text("id,latitude,longitude\nIMG_0001,1,2\n")
    with pytest.raises(SpecError, match=r"no CSV file found; .*labels\.csv matches it in another case"):
        load_samples(f"csv:{tmp_path / 'Labels.csv'}", split="all")


def test_a_double_dash_ends_the_options(tmp_path, capsys, monkeypatch):
    """`geospot predict model=… -- --odd-name.jpg`: after `--`, a name is a photo, whatever it looks like."""
    photo = tmp_path / "--odd-name.png"
    Image.new("RGB", (16, 16), (200, 120, 40)).save(photo)
    engine = ScriptedEngine(lambda image, text, turn, j: "Latitude: 1\nLongitude: 2")
    monkeypatch.chdir(tmp_path)
    assert cli.predict_main(["model=fake", "--greedy", "--", "--odd-name.png"], engine=engine) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_predict_refuses_greedy_with_samples_as_eval_does(tmp_path, capsys):
    """`--greedy samples=3` sampled anyway, without a word."""
    assert cli.predict_main(["model=x", str(tmp_path), "samples=3", "--greedy"]) == 2
    assert capsys.readouterr().err == "geospot predict: pass either greedy or samples=k, not both\n"


def test_an_answer_on_one_line_escapes_control_characters_once():
    from geospot.eval.predict_cli import _one_line

    raw = "Lat:\t1\r\nLon: 2\x1b[31m\xa0"  # a tab, CRLF, a terminal escape, a no-break space (text, kept)
    assert _one_line(raw) == "Lat:\\t1 | Lon: 2\\x1b[31m\xa0"  # the CSV's answer column
    assert repr(_one_line(raw, escape=False)) == repr("Lat:\t1 | Lon: 2\x1b[31m\xa0")  # the printed line's repr


def test_progress_off_a_terminal_is_plain_lines_not_carriage_return_frames(monkeypatch):
    import io

    err = io.StringIO()  # a log file: not a terminal
    monkeypatch.setattr("sys.stderr", err)
    bar = cli._bar(total=10, done=2, every=0.0)  # resumed with 2 done; a line per update here
    bar.update(3)
    bar.update(5)
    bar.close()
    lines = err.getvalue().splitlines()
    assert "\r" not in err.getvalue() and len(lines) == 3
    assert lines[0].startswith("eval: 5/10 images, ") and lines[-1].startswith("eval: 10/10 images, ")
    assert lines[0].endswith(" img/s")
    err.truncate(0), err.seek(0)
    done_before = cli._bar(total=4, done=4)  # nothing left to do: no rate to give
    done_before.show()
    done_before.close()
    assert err.getvalue() == "eval: 4/4 images\n"


def test_greedy_may_say_temperature_zero(tmp_path):
    # the help calls greedy "temperature 0": typing it is no contradiction
    engine = ScriptedEngine(lambda image, text, turn, j: "Latitude: 1\nLongitude: 2")
    assert cli.predict_main(["model=fake", str(_image(tmp_path)), "temperature=0"], engine=engine) == 0
