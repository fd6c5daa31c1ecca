"""After `geospot demo`, its runs are models: eval --compare takes them as they are, and their
held-out evals are in the run store (the dashboard's run list and eval map)."""

import json

from geospot.eval import cli
from geospot.runs.store import RunReader


def test_the_demo_runs_compare_and_carry_their_held_out_evals(short_demo, capsys):
    sft, rl = short_demo.folder / "sft", short_demo.folder / "rl"
    assert cli.eval_main(["--compare", str(sft), str(rl), "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    rows = compared["runs"]
    sft_row = f"sft (held-out, step {short_demo.cfg.sft_steps})"
    rl_row = f"rl (held-out, step {short_demo.cfg.rl_steps})"
    assert set(rows) == {sft_row, rl_row}
    # the demo scores its own eval on the val and test ids, and each run records it (not "the val split")
    assert {compared["asked"][r]["split"] for r in rows} == {short_demo.cfg.eval_split} == {"heldout"}
    assert rows[sft_row]["geoscore"] == short_demo.rows["stages"]["sft"]["geoscore"]  # the demo's own greedy row
    for run, stage in ((sft, "sft"), (rl, "rl")):
        summary = RunReader(run).summary()
        assert (summary["status"] == "done"
                and summary["heldout"]["geoscore"] == short_demo.rows["stages"][stage]["geoscore"])
        assert any(s["split"] == "eval" for s in RunReader(run).image_steps())


def test_the_demo_exports_card_code_answers_as_predict_on_every_turn(short_demo, tmp_path):
    """The demo's run asks zoomed telescoping turns (a thumbnail, then the photo on turn 2): its
    export's card code, run as written, gives `geospot predict`'s answer on each turn."""
    import io
    from contextlib import redirect_stdout

    from card_runs import card_answers, predicted_answers, run_card

    from geospot.eval.card import card_code
    from geospot.eval.export import export_main

    assert short_demo.cfg.zoom > 1
    out = tmp_path / "export"
    with redirect_stdout(io.StringIO()):
        assert export_main([f"checkpoint={short_demo.folder / 'rl'}", f"out={out}"]) == 0
    card = card_answers(run_card(card_code((out / "README.md").read_text()), tmp_path))
    asked = predicted_answers(out, out / "example.jpg")
    assert len(card) == 3 and card == asked  # turn 2 saw the photo, turn 1 the thumbnail, in both
