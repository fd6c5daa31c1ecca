"""The run lifecycle both loops share: one meaning per knob, one validator."""

import pytest

from geospot.config import ConfigError, parse_overrides
from geospot.train.lifecycle import RUN_HELP, due
from geospot.train.rl import RLConfig
from geospot.train.sft import SFTConfig


def test_due_every_n_steps_and_at_the_end_zero_only_at_the_end():
    assert [d for d in range(1, 8) if due(3, d, last=d == 7)] == [3, 6, 7]
    assert [d for d in range(1, 8) if due(0, d, last=d == 7)] == [7]


@pytest.mark.parametrize("cls", [SFTConfig, RLConfig])
def test_shared_knobs_mean_the_same_in_both_loops(cls):
    fields = cls.__dataclass_fields__
    for key, help_ in RUN_HELP.items():
        assert fields[key].metadata["help"] == help_, key
    cfg = parse_overrides(cls, ["save_every=0", "eval_every=0", "keep_checkpoints=0"])  # 0 = only at the end / all
    assert (cfg.save_every, cfg.eval_every, cfg.keep_checkpoints) == (0, 0, 0)
    for bad in (["save_every=-1"], ["keep_checkpoints=-2"], ["max_seconds=-1"], ["eval_n=-1"]):
        with pytest.raises(ConfigError, match=bad[0].split("=")[0] + "="):
            parse_overrides(cls, bad)
