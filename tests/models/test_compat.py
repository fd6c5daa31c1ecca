"""The transformers-version switch: the KV-cache argument name we pass is the one the installed
release's models take (not merely tolerate through a deprecation shim), and the cache comes back."""

import inspect
import warnings

import pytest
import torch

from geospot.models.compat import CACHE_ARG, output_cache
from geospot.models.tiny import FAMILIES, build_tiny_model


@pytest.mark.parametrize("family", FAMILIES)
def test_cache_argument_is_the_models_own(family):
    from transformers import AutoModelForImageTextToText, Cache

    model = AutoModelForImageTextToText.from_pretrained(build_tiny_model(family, "tiny")).eval()
    assert CACHE_ARG in inspect.signature(model.forward).parameters
    ids = torch.tensor([[1, 2, 3]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        out = model(input_ids=ids, use_cache=True)
        cache = output_cache(out)
        assert isinstance(cache, Cache) and cache.get_seq_length() == 3
        nxt = model(input_ids=torch.tensor([[4]]), **{CACHE_ARG: cache}, use_cache=True)
    assert output_cache(nxt).get_seq_length() == 4


def test_a_tiny_lora_engine_loads_without_the_peft_warning_or_weight_bars(capfd):
    import warnings

    from geospot.engines import EngineConfig, make_engine

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_engine(EngineConfig(model_name="tiny:qwen2_5_vl:tiny", lora_rank=4, device="cpu"))
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]
    assert "Loading weights" not in capfd.readouterr().err
    # the filter is narrow: the same FutureWarning outside the PEFT wrap still shows
    from geospot.models.compat import peft_wrap_quietly

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with peft_wrap_quietly():
            warnings.warn("something else", FutureWarning, stacklevel=1)
    assert len(caught) == 1
