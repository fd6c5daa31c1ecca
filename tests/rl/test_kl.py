import numpy as np
import pytest

from geospot.engines.datums import make_datum
from geospot.engines.types import ModelInput
from geospot.rl.kl import apply_kl_penalty


class BaseEngine:
    def __init__(self, base):
        self.base = base

    def forward_base(self, datums):
        return [np.asarray(self.base, dtype=np.float32) for _ in datums]


def test_kl_penalty_hand_worked():
    # tokens 0..4; tokens 3 and 4 were sampled with logprobs -1.0 and -2.0, advantage 0.5
    full = ModelInput.from_ints([10, 11, 12, 13, 14])
    d = make_datum(full, logprobs=np.array([0, 0, 0, -1.0, -2.0]), advantages=np.array([0, 0, 0, 0.5, 0.5]))
    # base logprobs (shifted positions): sampled targets at positions 2, 3 -> -1.5 and -1.0
    out, kl = apply_kl_penalty(BaseEngine([-9.0, -9.0, -1.5, -1.0]), [d], kl_coef=0.1)
    # logp - base = +0.5 and -1.0 -> advantages 0.5 - 0.05 = 0.45 and 0.5 + 0.1 = 0.6; prompt untouched
    np.testing.assert_allclose(out[0].loss_fn_inputs["advantages"], [0, 0, 0.45, 0.6], atol=1e-6)
    assert kl == pytest.approx(-0.25)


def test_kl_needs_an_adapter_or_forward_base():
    d = make_datum(
        ModelInput.from_ints([1, 2, 3]), logprobs=np.array([0, -1.0, -1.0]), advantages=np.array([0, 1.0, 1.0])
    )
    with pytest.raises(NotImplementedError, match="kl_coef"):
        apply_kl_penalty(object(), [d], 0.1)
