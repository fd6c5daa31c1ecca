"""`geospot score`."""

import csv
import json

import pytest

from geospot.cli import main
from geospot.geo.cli import score_main


def test_scores_shared_samples_against_themselves(capsys, geocoder, osv5m_labels):
    assert main(["score", "--pred", str(osv5m_labels), "--truth", str(osv5m_labels), "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    m = json.loads(out)
    assert m["n"] == 8 and m["parsed"] == 1.0 and m["median_km"] == 0.0 and m["mean_km"] == 0.0
    for key in ("acc_1km", "acc_25km", "acc_200km", "acc_750km", "acc_2500km", "country_acc", "region_acc", "city_acc"):
        assert m[key] == 1.0, key


def write(path, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return str(path)


@pytest.fixture
def truth(tmp_path):
    return write(
        tmp_path / "truth.csv", [["id", "latitude", "longitude", "country"], ["a", "0", "0", "X"], ["b", "0", "0", "X"]]
    )


def test_unparsed_and_table(tmp_path, truth, capsys):
    pred = write(tmp_path / "pred.csv", [["id", "latitude", "longitude"], ["b", "", ""], ["a", "0", "0.5"]])
    assert score_main(["--pred", pred, "--truth", truth, "--json", "--no-labels"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["parsed"] == 0.5 and m["mean_km"] is None  # inf -> null in strict JSON
    assert m["acc_200km"] == 0.5 and m["country_acc"] is None
    assert score_main(["--pred", pred, "--truth", truth, "--no-labels"]) == 0
    assert "unparsed answers count as misses" in capsys.readouterr().out


@pytest.mark.parametrize(
    "rows,needle",
    [
        ([["id", "latitude", "longitude"], ["a", "0", "0"]], "missing from"),
        ([["id", "latitude", "longitude"], ["photos/a.jpg", "0", "0"], ["a", "0", "0"], ["b", "0", "0"]],
         "predictions 'photos/a.jpg' and 'a' both name the truth id 'a'"),
        ([["id", "y", "longitude"], ["a", "0", "0"], ["b", "0", "0"]], "row 1 (header): missing column(s) latitude"),
        (
            [["id", "latitude", "longitude"], ["a", "0", "0"], ["b", "1", "east"]],
            "row 3, column 'longitude': 'east' is not a number",
        ),
        ([["id", "latitude", "longitude"], ["a", "0", "0"], ["b", "91", "0"]], "row 3, column 'latitude'"),
        ([["id", "latitude", "longitude"], ["a", "0", "0"], ["a", "0", "0"]], "row 3, column 'id': duplicate id"),
        ([["id", "latitude", "longitude"], ["a", "0", "0"], ["b", "1", ""]], "row 3, column 'longitude': blank"),
    ],
)
def test_bad_pred_files(tmp_path, truth, capsys, rows, needle):
    pred = write(tmp_path / "pred.csv", rows)
    assert score_main(["--pred", pred, "--truth", truth, "--no-labels"]) == 2
    err = capsys.readouterr().err
    assert needle in err
    if "row" in needle:
        assert "pred.csv" in err


def test_blank_truth_and_missing_file(tmp_path, capsys):
    truth = write(tmp_path / "truth.csv", [["id", "latitude", "longitude"], ["a", "", "0"]])
    assert score_main(["--pred", truth, "--truth", truth, "--no-labels"]) == 2
    assert "truth.csv: row 2, column 'latitude': blank" in capsys.readouterr().err
    assert score_main(["--pred", str(tmp_path / "nope.csv"), "--truth", truth]) == 2
    assert "nope.csv: cannot open" in capsys.readouterr().err


def test_columns_are_named_as_the_data_readers_name_them_and_any_separator_reads(tmp_path, truth, capsys):
    """IM2GPS3K's IMG_ID/LAT/LON, a TSV's lat/lng, a ';' file with decimal commas: the same scores
    as the plain file (a 0.5° longitude error at the equator: 55.6 km, the same in each)."""
    plain = write(tmp_path / "pred.csv", [["id", "latitude", "longitude"], ["a", "0", "0.5"], ["b", "0", "0"]])
    assert score_main(["--pred", plain, "--truth", truth, "--json", "--no-labels"]) == 0
    want = json.loads(capsys.readouterr().out)
    assert want["mean_km"] == pytest.approx(55.6 / 2, abs=0.1)
    files = {"im2gps.csv": "IMG_ID,LAT,LON\na,0,0.5\nb,0,0\n", "pred.tsv": "id\tlat\tlng\na\t0\t0.5\nb\t0\t0\n",
             "semi.csv": "id;latitude;longitude\na;0;0,5\nb;0;0\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        assert score_main(["--pred", str(tmp_path / name), "--truth", truth, "--json", "--no-labels"]) == 0, name
        assert json.loads(capsys.readouterr().out) == want, name


def test_predicted_paths_match_truth_ids_by_file_name_or_stem_and_extras_are_said(tmp_path, truth, capsys):
    """`geospot predict photos/ --csv` names photos by path; a truth file by name or stem (OSV-5M's
    ids). They match; a prediction with no truth row (a photo without GPS) is left out and said."""
    pred = write(tmp_path / "pred.csv", [["id", "latitude", "longitude"], ["roll/2024/a.jpg", "0", "0.5"],
                                          ["roll/b.JPG", "0", "0"], ["roll/no-gps.jpg", "5", "5"]])
    stems = write(tmp_path / "t.csv", [["id", "latitude", "longitude"], ["a", "0", "0"], ["b.JPG", "0", "0"]])
    assert score_main(["--pred", pred, "--truth", stems, "--json", "--no-labels"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["n"] == 2 and json.loads(out)["mean_km"] == pytest.approx(55.6 / 2, abs=0.1)
    assert "1 prediction(s) in" in err and "are not scored (first: 'roll/no-gps.jpg')" in err
    twice = write(tmp_path / "t2.csv", [["id", "latitude", "longitude"], ["x/a", "0", "0"], ["y/a", "0", "0"],
                                         ["b", "0", "0"]])
    assert score_main(["--pred", pred, "--truth", twice, "--no-labels"]) == 2  # `a` names two truth rows: neither
    assert ("prediction 'roll/2024/a.jpg' reads as 2 truth ids by its name 'a' ('x/a', 'y/a'); write its id as the "
            "truth file does") in capsys.readouterr().err
    exact = write(tmp_path / "p2.csv", [["id", "latitude", "longitude"], ["x/a", "0", "0"], ["y/a", "0", "0"],
                                         ["b", "0", "0"], ["roll/a.jpg", "1", "1"]])
    assert score_main(["--pred", exact, "--truth", twice, "--no-labels"]) == 0  # each has its own row: an extra
    assert "are not scored (first: 'roll/a.jpg')" in capsys.readouterr().err


def test_a_stem_predicted_for_a_truth_id_with_its_extension_matches_and_rows_are_the_files_lines(tmp_path, capsys):
    """IM2GPS-style truth ids carry the extension (123.jpg), `predict --csv` of renamed photos may not: they
    matched one way only. A blank line above a bad value moved the row named off the file's own line."""
    truth = write(tmp_path / "t.csv", [["id", "latitude", "longitude"], ["a.jpg", "0", "0"], ["b.JPG", "0", "0"]])
    stems = write(tmp_path / "p.csv", [["id", "latitude", "longitude"], ["a", "0", "0.5"], ["b", "0", "0"]])
    assert score_main(["--pred", stems, "--truth", truth, "--json", "--no-labels"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 2
    (tmp_path / "gaps.csv").write_text("id,latitude,longitude\n\na.jpg,0,0\n\n\nb.JPG,nan,0\n")
    assert score_main(["--pred", stems, "--truth", str(tmp_path / "gaps.csv"), "--no-labels"]) == 2
    assert "gaps.csv: row 6, column 'latitude': 'nan' is not a number" in capsys.readouterr().err
    # in predictions, N/A (or nan, none, -) is how people write "no answer": a miss, as a blank latitude is
    na = write(tmp_path / "na.csv", [["id", "latitude", "longitude"], ["a", "N/A", "N/A"], ["b", "0", "0"]])
    assert score_main(["--pred", na, "--truth", truth, "--json", "--no-labels"]) == 0
    assert json.loads(capsys.readouterr().out)["parsed"] == 0.5
    lon_na = write(tmp_path / "ln.csv", [["id", "latitude", "longitude"], ["a", "2", "N/A"], ["b", "0", "0"]])
    assert score_main(["--pred", lon_na, "--truth", truth, "--no-labels"]) == 2
    assert "'N/A' is not a number (use decimal degrees) (only a blank or N/A latitude marks an unparsed answer)" \
        in capsys.readouterr().err


def test_swapped_columns_and_a_folder_as_truth_are_said_with_the_fix(tmp_path, truth, capsys):
    swapped = write(tmp_path / "s.csv", [["id", "latitude", "longitude"], ["a", "108.9", "-19.1"], ["b", "0", "0"]])
    assert score_main(["--pred", swapped, "--truth", truth, "--no-labels"]) == 2
    assert ("row 2, column 'latitude': '108.9' is outside [-90, 90] degrees (latitude and longitude swapped? the "
            "longitude column holds -19.1)") in capsys.readouterr().err
    words = write(tmp_path / "w.csv", [["id", "latitude", "longitude"], ["a", "north", "10"], ["b", "0", "0"]])
    assert score_main(["--pred", words, "--truth", truth, "--no-labels"]) == 2
    assert "longitude swapped?" not in capsys.readouterr().err  # not a number: nothing to say about the columns' order
    (tmp_path / "osv").mkdir()
    (tmp_path / "osv" / "labels.csv").write_text("id,latitude,longitude\na,0,0\n")
    assert score_main(["--pred", truth, "--truth", str(tmp_path / "osv"), "--no-labels"]) == 2
    assert f"osv: a folder; give its CSV file, e.g. {tmp_path / 'osv' / 'labels.csv'}" in capsys.readouterr().err
