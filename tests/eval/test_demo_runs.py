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
