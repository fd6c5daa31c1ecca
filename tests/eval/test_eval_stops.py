"""What eval and predict say when they stop early: a Ctrl-C (what was kept), a model that cannot
be served (one sentence, before any data is read)."""

from pathlib import Path

import pytest
from eval_fakes import ScriptedEngine

from geospot.eval import cli
from geospot.eval import predictions as io

OSV = Path("/work/shared/data/osv5m-samples")
pytestmark = pytest.mark.skipif(not OSV.exists(), reason="needs the shared OSV-5M samples")


def answer(image, text, turn, j):
    return "Latitude: 48.86\nLongitude: 2.35"


def cfg(tmp_path, **kw):
    base = dict(model="fake", data=str(OSV), out=str(tmp_path / "run"), batch_size=2, geocoder="none")
    return cli.EvalConfig(**{**base, **kw})


class CtrlC(ScriptedEngine):
    """Ctrl-C while the third batch is answered."""

    def sample(self, prompts, k, params):
        if self.calls == 2:
            raise KeyboardInterrupt
        return super().sample(prompts, k, params)


def test_a_ctrl_c_in_eval_or_predict_says_what_was_kept(tmp_path, capsys):
    """The answers so far are kept (eval: predictions.csv, resumed by the same command; predict: the
    lines printed and --csv): said in one line, not a traceback."""
    pred = tmp_path / "run" / "predictions.csv"
    with pytest.raises(KeyboardInterrupt, match=rf"^geospot eval: stopped \(Ctrl-C\); the answers for 4 images are "
                                                rf"kept in {pred}: the same command goes on from there$"):
        cli.run_eval(cfg(tmp_path), engine=CtrlC(answer))
    assert len(io.read_predictions(pred)) == 4
    out = tmp_path / "rows.csv"
    assert cli.predict_main(["model=fake", str(OSV / "unlabeled"), "batch_size=5", "--csv", str(out)],
                            engine=CtrlC(answer)) == 130
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 10 and len(out.read_text().splitlines()) == 1 + 10
    assert captured.err.endswith(f"geospot predict: stopped (Ctrl-C) after 10 of 12 photos; their rows are in {out}\n")


@pytest.mark.parametrize("model, said", [
    ("tiny:qwen2_5_vll", "model='tiny:qwen2_5_vll': the tiny offline models are tiny:<qwen2_vl|qwen2_5_vl|qwen3_vl>"),
    ("Qwen/Not-In-The-Cache", "model='Qwen/Not-In-The-Cache' is neither a local folder nor in the Hugging Face "
                              "cache, and HF_HUB_OFFLINE is set"),
])
def test_a_model_that_cannot_load_is_one_sentence_before_the_data(model, said, tmp_path, capsys, monkeypatch):
    """eval and predict name a mistyped tiny model or a hub id offline as sft does, before any data is
    read (they printed a traceback, or the hub library's own words cut off mid-word)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.eval_main([f"model={model}", f"data={OSV}", f"out={tmp_path / 'e'}"]) == 2
    assert cli.predict_main([f"model={model}", str(OSV / "unlabeled")]) == 2
    err = capsys.readouterr().err
    assert err.count(said) == 2 and "Traceback" not in err and not (tmp_path / "e").exists()


class Sigterm(ScriptedEngine):
    """SIGTERM (`timeout`, a scheduler) while the third batch is answered: geospot's dispatcher raises it
    as stops.Terminated."""

    def sample(self, prompts, k, params):
        if self.calls == 2:
            from geospot.stops import Terminated

            raise Terminated("SIGTERM")
        return super().sample(prompts, k, params)


def test_a_sigterm_in_eval_or_predict_is_said_as_a_ctrl_c_is(tmp_path, capsys):
    """`timeout 10 geospot eval ...` ended with exit 124 and nothing said (the answers were kept);
    now the same line as Ctrl-C's, naming SIGTERM, and 143."""
    from geospot.stops import Terminated

    with pytest.raises(Terminated, match=r"^geospot eval: stopped \(SIGTERM\); the answers for 4 images are kept"):
        cli.run_eval(cfg(tmp_path), engine=Sigterm(answer))
    assert cli.predict_main(["model=fake", str(OSV / "unlabeled"), "batch_size=5"], engine=Sigterm(answer)) == 143
    assert capsys.readouterr().err.endswith("geospot predict: stopped (SIGTERM) after 10 of 12 photos\n")
