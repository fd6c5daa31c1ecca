"""geospot eval / predict on the OSV-5M samples with a scripted engine (fast), plus
the resume and `geospot score` agreement checks."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from eval_fakes import ScriptedEngine

from geospot.config import ConfigError
from geospot.eval import cli, predict_cli
from geospot.eval import predictions as io
from geospot.eval.loading import LoadedModel

OSV = Path("/work/shared/data/osv5m-samples")
pytestmark = pytest.mark.skipif(not OSV.exists(), reason="needs the shared OSV-5M samples")


def by_pixels(image, text, turn, j):
    """A deterministic 'model': coordinates from image statistics; dark images unparsed."""
    a = np.asarray(image.convert("L").resize((8, 8)), dtype=float)
    if a.mean() < 60:
        return "I cannot tell."
    return f"Latitude: {a.mean() / 255 * 140 - 70:.3f}\nLongitude: {a.std() / 100 * 340 - 170:.3f}"


def cfg(tmp_path, **kw):
    base = dict(model="fake", data=str(OSV), out=str(tmp_path / "run"), batch_size=2, geocoder="reverse")
    return cli.EvalConfig(**{**base, **kw})


def test_eval_numbers_equal_geospot_score(tmp_path, capsys):
    from geospot.geo.cli import score_main

    summary = cli.run_eval(cfg(tmp_path), engine=ScriptedEngine(by_pixels))
    m = summary["metrics"]
    assert m["n"] == 8
    run = tmp_path / "run"
    assert json.loads((run / "summary.json").read_text())["metrics"]["n"] == 8
    rows = (run / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("id,latitude,longitude,raw_text")
    capsys.readouterr()
    assert score_main(["--pred", str(run / "predictions.csv"), "--truth", str(run / "truth.csv"), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert set(scored) <= set(m)
    for k, v in scored.items():
        if v is None:
            assert not math.isfinite(m[k]), k
        else:
            assert m[k] == pytest.approx(v, rel=1e-12), k


def test_interrupted_eval_resumes_without_recomputing(tmp_path):
    class Killed(Exception):
        pass

    class Dying(ScriptedEngine):
        def sample(self, prompts, k, params):
            if self.calls == 2:  # killed while the third batch runs
                raise Killed()
            return super().sample(prompts, k, params)

    with pytest.raises(Killed):
        cli.run_eval(cfg(tmp_path), engine=Dying(by_pixels))
    done = io.read_predictions(tmp_path / "run" / "predictions.csv")
    assert len(done) == 4
    # a torn half row from the kill is dropped, not read
    with open(tmp_path / "run" / "predictions.csv", "a") as f:
        f.write('999,12.5,')
    again = ScriptedEngine(by_pixels)
    summary = cli.run_eval(cfg(tmp_path), engine=again)
    assert again.calls == 2 and again.prompts_seen == 4  # only the 4 unfinished images
    assert summary["evaluated_now"] == 4
    assert not set(again.ids_seen) & {p.id for p in done}
    fresh = cli.run_eval(cfg(tmp_path, out=str(tmp_path / "fresh")), engine=ScriptedEngine(by_pixels))
    assert json.dumps(summary["metrics"]) == json.dumps(fresh["metrics"])
    # a finished run reruns for free
    idle = ScriptedEngine(by_pixels)
    cli.run_eval(cfg(tmp_path), engine=idle)
    assert idle.calls == 0
    # a different config into the same folder is refused, naming the key
    with pytest.raises(ConfigError, match="env_type"):
        cli.run_eval(cfg(tmp_path, env_type="telescoping"), engine=idle)
    # the same folder spelled otherwise (a trailing /, ./) is the same data: resumed, not refused
    cli.run_eval(cfg(tmp_path, data=str(OSV) + "/"), engine=idle)
    cli.run_eval(cfg(tmp_path, data=str(OSV / "." / "images" / "..")), engine=idle)
    assert idle.calls == 0


def test_eval_main_prints_table_and_json(tmp_path, capsys, monkeypatch):
    import geospot.eval.loading as loading

    monkeypatch.chdir(tmp_path)  # default run folders land under ./runs
    monkeypatch.setattr(loading, "load_model", lambda model, **kw: LoadedModel(ScriptedEngine(by_pixels), model, model))
    monkeypatch.setattr(loading, "check_model", lambda model, **kw: None)  # "x" stands for a model that loads
    out = str(tmp_path / "a")
    assert cli.eval_main(["model=x", f"data={OSV}", f"out={out}", "greedy", "geocoder=none", "n=3"]) == 0
    text = capsys.readouterr().out
    assert "median km" in text and "predictions:" in text
    assert cli.eval_main(["model=x", f"data={OSV}", f"out={tmp_path / 'b'}", "--json", "geocoder=none",
                          "env_type=telescoping"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["metrics"]["n"] == 8 and js["env_type"] == "telescoping" and js["metrics"]["country_acc"] is None
    # compare the two runs
    assert cli.eval_main(["--compare", out, str(tmp_path / "b")]) == 0
    table = capsys.readouterr().out
    assert "| a " in table and "| b " in table and "*" in table
    # a typed teacher_forcing (an oracle study) is said on stderr for any model, and in the summary
    assert cli.eval_main(["model=x", f"data={OSV}", f"out={tmp_path / 'c'}", "--json", "geocoder=none", "n=2",
                          "env_type=hierarchical", "teacher_forcing=0.5"]) == 0
    said = capsys.readouterr()
    assert "teacher_forcing=0.5: later turns are told the truth, so this is an oracle study" in said.err
    assert json.loads(said.out)["sampling"] == "greedy with teacher_forcing=0.5 (later turns told the truth)"
    # errors are one line and exit 2
    assert cli.eval_main(["model=x"]) == 2
    assert "data=" in capsys.readouterr().err
    assert cli.eval_main(["model=x", f"data={OSV}", "samples=-1"]) == 2
    assert cli.eval_main(["model=x", "data=nosuchkind:abc"]) == 2
    assert not (tmp_path / "runs").exists()  # nothing made for a bad spec


def test_predict_prints_one_line_per_image_and_a_map(tmp_path, capsys):
    page = tmp_path / "map.html"
    rc = cli.predict_main(["model=fake", str(OSV / "unlabeled"), "--map", str(page)], engine=ScriptedEngine(by_pixels))
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 12
    names = sorted(p.name for p in (OSV / "unlabeled").iterdir())
    assert [Path(l.split("\t")[0]).name for l in lines] == names
    html = page.read_text()
    assert html.count("<tr>") == 13 and "<script" not in html
    rc = cli.predict_main(["model=fake", str(OSV / "unlabeled"), "--json", "env_type=telescoping"],
                          engine=ScriptedEngine(by_pixels))
    rows = [json.loads(l) for l in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 12 and all(len(r["turns"]) in (1, 3) for r in rows)
    parsed = [r for r in rows if r["latitude"] is not None]
    assert parsed and all(r["country"] for r in parsed)
    # --map / --csv into folders not made yet: made, as an eval's out= is (the map came after every answer,
    # then a traceback threw them away)
    page, table = tmp_path / "new" / "maps" / "m.html", tmp_path / "other" / "p.csv"
    assert cli.predict_main(["model=fake", str(OSV / "unlabeled"), "--map", str(page), "--csv", str(table)],
                            engine=ScriptedEngine(by_pixels)) == 0
    assert page.read_text().count("<tr>") == 13 and len(table.read_text().splitlines()) == 13
    capsys.readouterr()
    assert cli.predict_main(["model=fake", str(OSV / "unlabeled"), "--map", str(tmp_path)], engine=None) == 2
    assert f"--map {tmp_path} is a folder; give a file name" in capsys.readouterr().err


def test_predict_names_a_place_only_when_one_is_near(capsys):
    """A guess on land is named by its place; one on the Antarctic ice or the open sea says no
    place is within 100 km and names the nearest with its distance, never as the answer's place."""
    def paris_or_ice(image, text, turn, j):
        bright = np.asarray(image.convert("L")).mean() > 110
        return "Latitude: 48.8566\nLongitude: 2.3522" if bright else "Latitude: -75.0\nLongitude: 10.8"

    assert cli.predict_main(["model=fake", str(OSV / "unlabeled")], engine=ScriptedEngine(paris_or_ice)) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    near = [l for l in lines if "48.8566" in l]
    far = [l for l in lines if "-75.0000" in l]
    assert near and far and len(near) + len(far) == 12
    assert all(l.split("\t")[2] == "Paris, Paris, Ile-de-France, FR" for l in near)
    assert all(l.split("\t")[2].startswith("no place within 100 km (nearest: ") and " km away)" in l for l in far)
    assert all(", ," not in l.split("\t")[2] for l in lines)  # GeoNames' empty admin parts left out
    assert cli.predict_main(["model=fake", str(OSV / "unlabeled"), "--json"], engine=ScriptedEngine(paris_or_ice)) == 0
    rows = [json.loads(l) for l in capsys.readouterr().out.strip().splitlines()]
    assert all((r["place_km"] < 5) == (r["latitude"] > 0) for r in rows)
    assert all(r["country"] for r in rows)  # the nearest place's labels stay, as the metrics define them


def test_predict_json_labels_read_as_the_line_does(capsys):
    """GeoNames' exact-match labels keep empty admin parts ("Georgetown, , Ascension, SH"); the
    JSON a user reads drops them, as the text line does."""
    def georgetown(image, text, turn, j):
        return "Latitude: -7.93\nLongitude: -14.42"

    assert cli.predict_main(["model=fake", str(OSV / "unlabeled"), "--json"], engine=ScriptedEngine(georgetown)) == 0
    rows = [json.loads(l) for l in capsys.readouterr().out.strip().splitlines()]
    assert {(r["country"], r["region"], r["city"], r["place"]) for r in rows} == {
        ("SH", "Ascension, SH", "Georgetown, Ascension, SH", "Georgetown, Ascension, SH")}


def test_eval_says_what_it_skipped_and_why_nothing_was_left(tmp_path, capsys, monkeypatch):
    """A labelled folder with a row whose image is missing: the table, then the skips by reason;
    a folder where every row is unusable: one sentence naming the reasons, exit 2."""
    import shutil

    real = cli.run_eval
    monkeypatch.setattr(cli, "run_eval", lambda c, given=None: real(c, engine=ScriptedEngine(by_pixels), given=given))
    data = tmp_path / "labelled"
    shutil.copytree(OSV / "images", data / "images")
    (data / "labels.csv").write_text((OSV / "labels.csv").read_text() + "nope,1,2,x,y,z\n")
    assert cli.eval_main(["model=fake", f"data={data}", f"out={tmp_path / 'e'}", "geocoder=none"]) == 0
    out = capsys.readouterr().out
    assert "not evaluated (skipped records, by reason): missing_image 1" in out
    (data / "labels.csv").write_text("id,latitude,longitude\nnope,1,2\nnada,3,4\n")
    assert cli.eval_main(["model=fake", f"data={data}", f"out={tmp_path / 'f'}", "geocoder=none"]) == 2
    err = capsys.readouterr().err
    assert "holds no usable samples (missing_image 2)" in err
    assert not (tmp_path / "f").exists() and "img/s" not in err  # no empty eval folder, no empty progress bar


def test_predict_streams_a_batch_at_a_time(tmp_path, capsys, monkeypatch):
    """A folder of photos is read a batch at a time and each batch's lines are printed before the
    next batch is read (thousands of full-size photos never sit in memory at once); a file that is
    no image is named before the model is asked anything, and the rest are still answered."""
    import shutil

    photos = tmp_path / "photos"
    shutil.copytree(OSV / "unlabeled", photos)
    (photos / "notes.jpg").write_text("not a photo")
    (photos / "zero.jpg").write_bytes(b"")
    (photos / "gone.jpg").symlink_to(tmp_path / "moved-away.jpg")  # a link whose photo was moved
    loads, printed = [], []  # per load: its size, and the lines printed since the load before it

    def load(named, square=False):
        seen = capsys.readouterr()
        loads.append(len(named))
        printed.append((len(seen.out.splitlines()), seen.err))
        return real_load(named, square)

    real_load = predict_cli.prepared_samples
    monkeypatch.setattr(predict_cli, "prepared_samples", load)
    assert cli.predict_main(["model=fake", str(photos), "batch_size=5"], engine=ScriptedEngine(by_pixels)) == 0
    assert loads == [5, 5, 2]  # 12 photos in batches of 5; notes.jpg never loaded
    assert [n for n, _ in printed] == [0, 5, 5]  # each batch's 5 lines were out before the next load
    assert f"skipped image: {photos / 'notes.jpg'} (not an image)" in printed[0][1]  # named before any answer
    assert f"skipped image: {photos / 'zero.jpg'} (an empty file)" in printed[0][1]
    assert (f"skipped image: {photos / 'gone.jpg'} (a broken link: {tmp_path / 'moved-away.jpg'} does not exist)"
            in printed[0][1])  # a folder walk passes over it: it was answered by nothing, without a word
    assert len(capsys.readouterr().out.splitlines()) == 2
    (photos / "a.jpg").write_text("nor this")
    for q in photos.iterdir():
        if q.name not in ("notes.jpg", "a.jpg"):
            q.unlink()
    assert cli.predict_main(["model=fake", str(photos)], engine=None) == 2  # refused before any model loads
    assert "none of the images could be read" in capsys.readouterr().err
    links = tmp_path / "links"  # every photo a link into a drive that is not mounted: said why nothing is found
    links.mkdir()
    (links / "a.jpg").symlink_to("../unmounted/a.jpg")
    capsys.readouterr()
    assert cli.predict_main(["model=fake", str(links)], engine=None) == 2
    assert (f"1 is a broken link: {links / 'a.jpg'} (a broken link: {tmp_path / 'unmounted' / 'a.jpg'} does not "
            "exist)") in capsys.readouterr().err


def test_predict_says_how_far_each_answer_is_from_the_photos_gps(tmp_path, capsys):
    """A phone's photos carry where they were taken: predict gives the distance from it per photo
    (the JSON's km_from_gps, by hand: Paris to Sydney's 33°52'04"S 151°12'36"E is 16,960 km) and a
    median over them; a photo without GPS gets neither."""
    from PIL import Image

    from geospot.data.exif import GPS_IFD

    photos = tmp_path / "trip"
    photos.mkdir()
    for i, src in enumerate(sorted((OSV / "unlabeled").iterdir())[:3]):
        im = Image.open(src)
        exif = im.getexif()
        if i < 2:
            exif.get_ifd(GPS_IFD).update({1: "S", 2: (33.0, 52.0, 4.0), 3: "E", 4: (151.0, 12.0, 36.0)})
        im.save(photos / f"{i}.jpg", exif=exif.tobytes())
    paris = lambda image, text, turn, j: "Latitude: 48.8566\nLongitude: 2.3522"  # noqa: E731
    assert cli.predict_main(["model=fake", str(photos), "--json"], engine=ScriptedEngine(paris)) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(l) for l in out.strip().splitlines()]
    assert [r["photo_gps"] is not None for r in rows] == [True, True, False]
    assert rows[0]["km_from_gps"] == pytest.approx(16960, abs=5) and rows[2]["km_from_gps"] is None
    assert "2 of 3 photos carry GPS in their EXIF: median 16,960 km from it" in err
    page = tmp_path / "map.html"
    assert cli.predict_main(["model=fake", str(photos), "--map", str(page)], engine=ScriptedEngine(paris)) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [l.endswith("16,960 km from the photo's GPS") for l in lines] == [True, True, False]
    html = page.read_text()  # the true places drawn and joined to the answers; the distance in the table
    assert html.count('<rect class="truth"') == 2 and html.count('<line class="miss"') == 2
    assert "<th>km from the photo's GPS</th>" in html and html.count("<td>16,960</td>") == 2
    assert "3 of 3 images located" in html
    # --csv: the rows as a table `geospot score` takes (a truth keyed by the same ids)
    import csv

    from geospot.geo.cli import score_main

    table = tmp_path / "pred.csv"
    assert cli.predict_main(["model=fake", str(photos), "--csv", str(table)], engine=ScriptedEngine(paris)) == 0
    capsys.readouterr()
    rows = list(csv.DictReader(open(table)))
    assert [r["km_from_gps"] for r in rows] == ["16960.492", "16960.492", ""]
    assert rows[0]["photo_latitude"].startswith("-33.8677") and rows[2]["photo_latitude"] == ""
    truth = tmp_path / "truth.csv"
    truth.write_text("id,latitude,longitude\n" + "".join(f"{r['id']},48.8566,2.3522\n" for r in rows))
    assert score_main(["--pred", str(table), "--truth", str(truth), "--json", "--no-labels"]) == 0
    assert json.loads(capsys.readouterr().out)["median_km"] == 0.0


def test_predict_csv_has_a_row_per_input_with_the_raw_answer_and_why_a_file_was_skipped(tmp_path, capsys):
    import csv
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(sorted((OSV / "unlabeled").iterdir())[0], photos / "a.jpg")
    (photos / "notes.jpg").write_text("not a photo")
    table = tmp_path / "pred.csv"
    shrug = lambda image, text, turn, j: "somewhere warm"  # noqa: E731
    assert cli.predict_main(["model=fake", str(photos), "--csv", str(table)], engine=ScriptedEngine(shrug)) == 0
    capsys.readouterr()
    rows = {Path(r["id"]).name: r for r in csv.DictReader(open(table))}
    assert rows["a.jpg"]["latitude"] == "" and rows["a.jpg"]["answer"] == "somewhere warm"  # kept, not blanks only
    assert rows["notes.jpg"]["skipped"] == "not an image" and rows["notes.jpg"]["latitude"] == ""


def test_a_run_evaluated_on_its_own_training_data_is_scored_on_the_images_it_held_out(tmp_path, capsys, monkeypatch):
    """`geospot eval model=runs/a data=photos` where runs/a trained on photos: split=auto scores only
    the ids training never read (val + test), however the folder is spelled, and says so; split=all
    scores them all, with a note that the numbers are not held-out; other data is scored whole."""
    import shutil

    from geospot.data import split_of
    from geospot.data.csv_source import CsvFolderSource

    proj = tmp_path / "proj"
    shutil.copytree(OSV / "images", proj / "photos" / "images")
    shutil.copy(OSV / "labels.csv", proj / "photos" / "labels.csv")
    run = proj / "runs" / "a"
    (run / "checkpoints" / "2").mkdir(parents=True)
    (run / "checkpoints" / "2" / "state.json").write_text(json.dumps({"step": 2}))
    opts = ",val_frac=0.3,test_frac=0.3"
    (run / "config.json").write_text(json.dumps({"kind": "sft", "started_in": str(proj), "config": {
        "model_name": "tiny:qwen2_5_vl:tiny", "data": "photos" + opts, "prompt_style": "single"}}))
    source = CsvFolderSource([str(proj / "photos" / "labels.csv")], str(proj / "photos"))
    ids = [r.id for r in source.records(0, 0, False)]
    held = [i for i in ids if split_of(i, 0.3, 0.3) != "train"]
    assert 0 < len(held) < len(ids) == 8
    real = cli.run_eval
    monkeypatch.setattr(cli, "run_eval", lambda c, given=None: real(c, engine=ScriptedEngine(by_pixels), given=given))
    monkeypatch.chdir(tmp_path)  # the run's data spelled from another folder is the same folder

    def evaluate(data, *extra):
        assert cli.eval_main([f"model={run}", f"data={data}", f"out={tmp_path / 'e'}", "geocoder=none", "--json",
                              *extra]) == 0
        out, err = capsys.readouterr()
        shutil.rmtree(tmp_path / "e")
        return json.loads(out.strip().splitlines()[-1]), err

    summary, err = evaluate(f"{proj}/photos/" + opts)
    assert summary["split"] == "heldout" and summary["metrics"]["n"] == len(held)
    assert f"is what {run} trained on (its train split): evaluating the images it held out" in err
    summary, err = evaluate(f"{proj}/photos" + opts, "split=all", "n=50")
    assert summary["metrics"]["n"] == 8 and "these numbers are not held-out ones" in err
    assert f"n=50, but data={proj}/photos{opts} split=all holds 8 usable images: all of them are evaluated" in err
    summary, err = evaluate(f"{proj}/photos")  # other split fractions: which ids were held out is unknown
    assert summary["split"] == "all" and summary["metrics"]["n"] == 8
    assert f"with other val_frac / test_frac than its data=photos{opts}" in err and "may include trained ones" in err
    summary, err = evaluate(f"{proj}/photos{opts},square=true,max_side=256")  # other looks, the same split
    assert summary["split"] == "heldout" and summary["metrics"]["n"] == len(held)
    (run / "config.json").write_text(json.dumps({"kind": "sft", "started_in": str(proj), "config": {
        "model_name": "tiny:qwen2_5_vl:tiny", "data": "photos,val_frac=0,test_frac=0"}}))
    assert cli.eval_main([f"model={run}", f"data={proj}/photos,val_frac=0,test_frac=0", "geocoder=none"]) == 2
    assert "the run trained on it and held none of its images out" in capsys.readouterr().err
    # split=heldout typed for data the run never saw: no word of having trained on it
    assert cli.eval_main([f"model={run}", f"data={OSV},val_frac=0,test_frac=0", "split=heldout",
                          "geocoder=none"]) == 2
    err = capsys.readouterr().err
    assert "trained on it" not in err and "split=heldout holds no usable samples" in err, err
    summary, err = evaluate(str(OSV))  # other data: scored whole, without a word
    assert summary["split"] == "all" and summary["metrics"]["n"] == 8 and "trained" not in err


def test_a_run_trained_on_a_pack_of_the_data_is_scored_on_the_images_it_held_out(tmp_path, capsys, monkeypatch):
    """`geospot data pack photos packs`, a run trained on packs, then eval on photos (or the other
    way round): pack keeps each id and the split is a hash of the id, so split=auto scores only the
    ids training never read, and says how it knows. Without the pack's record, photos are other data."""
    import shutil

    from geospot.data import split_of
    from geospot.data.cli import main as data_main

    proj = tmp_path / "proj"
    shutil.copytree(OSV / "images", proj / "photos" / "images")
    shutil.copy(OSV / "labels.csv", proj / "photos" / "labels.csv")
    monkeypatch.chdir(proj)
    assert data_main(["pack", "photos", "packs"]) == 0
    opts = ",val_frac=0.3,test_frac=0.3"
    run = proj / "runs" / "a"
    (run / "checkpoints" / "2").mkdir(parents=True)
    (run / "checkpoints" / "2" / "state.json").write_text(json.dumps({"step": 2}))
    real = cli.run_eval
    monkeypatch.setattr(cli, "run_eval", lambda c, given=None: real(c, engine=ScriptedEngine(by_pixels), given=given))
    monkeypatch.chdir(tmp_path)

    def evaluate(trained_on, data):
        (run / "config.json").write_text(json.dumps({"kind": "sft", "started_in": str(proj), "config": {
            "model_name": "tiny:qwen2_5_vl:tiny", "data": trained_on + opts, "prompt_style": "single"}}))
        capsys.readouterr()
        assert cli.eval_main([f"model={run}", f"data={data}{opts}", f"out={tmp_path / 'e'}", "geocoder=none",
                              "--json"]) == 0
        out, err = capsys.readouterr()
        shutil.rmtree(tmp_path / "e")
        return json.loads(out.strip().splitlines()[-1]), err

    held = sum(split_of(p.stem, 0.3, 0.3) != "train" for p in (OSV / "images").glob("*.jpg"))
    assert 0 < held < 8
    summary, err = evaluate("packs", f"{proj}/photos")
    assert summary["split"] == "heldout" and summary["metrics"]["n"] == held
    assert f"trained on (as the shards packed from it, packs{opts}) (its train split)" in err
    summary, err = evaluate("photos", f"{proj}/packs")
    assert summary["split"] == "heldout" and summary["metrics"]["n"] == held
    assert "trained on (these shards were packed from it) (its train split)" in err
    (proj / "packs" / "geospot-pack.json").unlink()  # no record: which images the shards hold is not known here
    summary, err = evaluate("packs", f"{proj}/photos")
    assert summary["split"] == "all" and summary["metrics"]["n"] == 8 and "trained" not in err
    # shards of the held-out ids only hold no trained image: other data, scored whole, without a word
    assert data_main(["pack", f"{proj}/photos{opts}", str(proj / "held"), "--split", "heldout"]) == 0
    summary, err = evaluate("photos", f"{proj}/held")
    assert summary["split"] == "all" and summary["metrics"]["n"] == held and "trained" not in err


def test_predict_reads_every_subfolder_and_each_photo_once(tmp_path, capsys):
    """A camera roll: a photo at the top and the rest in year / trip subfolders. All are answered,
    once each, however the arguments name them (the folder, a subfolder again, a file again)."""
    import shutil

    roll = tmp_path / "roll"
    photos = sorted((OSV / "unlabeled").iterdir())
    (roll / "2024" / "Paris trip").mkdir(parents=True)
    shutil.copy(photos[0], roll / "top.jpg")
    for i, src in enumerate(photos[1:4]):
        shutil.copy(src, roll / "2024" / "Paris trip" / f"{i}.JPG")
    args = [str(roll), str(roll / "2024"), str(roll / "top.jpg")]
    assert cli.predict_main(["model=fake", *args], engine=ScriptedEngine(by_pixels)) == 0
    names = [Path(l.split("\t")[0]) for l in capsys.readouterr().out.strip().splitlines()]
    assert names == [roll / "top.jpg", *(roll / "2024" / "Paris trip" / f"{i}.JPG" for i in range(3))]


def test_predict_on_labelled_data_says_that_eval_scores_it(tmp_path, capsys):
    """The OSV-5M samples hold labels.csv: predict still answers without truth, and says which
    command scores against the labels, whether given the folder or its images/; a photo folder
    without labels (or with a CSV of something else) gets no such note."""
    assert cli.predict_main(["model=fake", str(OSV)], engine=ScriptedEngine(by_pixels)) == 0
    err = capsys.readouterr().err
    assert f"note: {OSV} holds labels (labels.csv); `geospot eval model=fake data={OSV}`" in err
    assert cli.predict_main(["model=fake", str(OSV / "images")], engine=ScriptedEngine(by_pixels)) == 0
    assert f"`geospot eval model=fake data={OSV}`" in capsys.readouterr().err
    import shutil

    roll = tmp_path / "roll"
    roll.mkdir()
    shutil.copy(sorted((OSV / "unlabeled").iterdir())[0], roll / "a.jpg")
    (roll / "expenses.csv").write_text("date,amount\n2024-01-02,3.5\n")
    assert cli.predict_main(["model=fake", str(roll)], engine=ScriptedEngine(by_pixels)) == 0
    assert "holds labels" not in capsys.readouterr().err


def test_a_rerun_eval_reuses_answers_only_while_their_labels_stand(tmp_path, capsys, monkeypatch):
    """The same command again resumes its folder and says so; a label fixed in the data since
    is evaluated again against the new truth (the table and truth.csv use it), the rest reused."""
    import csv
    import shutil

    from geospot.eval.runner import predict

    real, calls = cli.run_eval, []  # calls: images sent to the model, per run
    monkeypatch.setattr(cli, "run_eval", lambda c, given=None: real(c, engine=ScriptedEngine(by_pixels), given=given))
    monkeypatch.setattr(cli, "predict", lambda engine, todo, **kw: calls.append(len(todo)) or predict(engine, todo,
                                                                                                      **kw))

    data = tmp_path / "labelled"
    shutil.copytree(OSV / "images", data / "images")
    shutil.copy(OSV / "labels.csv", data / "labels.csv")
    argv = ["model=fake", f"data={data}", f"out={tmp_path / 'e'}", "geocoder=none", "--json"]
    assert cli.eval_main(argv) == 0 and calls == [8]
    capsys.readouterr()
    assert cli.eval_main(argv) == 0 and calls == [8]  # nothing evaluated again
    assert "8 of 8 images' answers were reused from" in capsys.readouterr().err
    rows = list(csv.DictReader(open(data / "labels.csv")))
    rows[0]["latitude"] = "12.5"
    with open(data / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert cli.eval_main(argv) == 0 and calls == [8, 1]
    out, err = capsys.readouterr()
    assert "7 of 8 images' answers were reused from" in err and "1 whose label changed since" in err
    truth = {r["id"]: r["latitude"] for r in csv.DictReader(open(tmp_path / "e" / "truth.csv"))}
    assert truth[rows[0]["id"]] == "12.5" and json.loads(out.strip().splitlines()[-1])["metrics"]["n"] == 8


def test_synthetic_data_says_its_test_split_is_what_is_scored(tmp_path, capsys):
    """data=synthetic:n=64 scored 2 images (its test split) without a word; a user asked for 64."""
    cli.run_eval(cfg(tmp_path, data="synthetic:n=64,size=56,seed=0", geocoder="none"), engine=ScriptedEngine(by_pixels))
    err = capsys.readouterr().err
    assert "split=auto: synthetic data is scored on its test split" in err and "split=all scores every image" in err
    cli.run_eval(cfg(tmp_path, data="synthetic:n=64,size=56,seed=0", geocoder="none", split="all",
                     out=str(tmp_path / "all")), engine=ScriptedEngine(by_pixels))
    assert "split=auto" not in capsys.readouterr().err  # asked for by name: nothing to explain
