"""The SFT warm start GRPO tests begin from: a short full fine-tuning run of the tiny model whose
sampled answers parse often enough that GRPO groups have reward spread, so RL steps really train."""

import io
from pathlib import Path

TINY = "tiny:qwen2_5_vl:tiny"


def warm_start(log: Path, data: str, max_steps: int, **overrides) -> Path:
    """Train it into `log` (the run folder; returned). `overrides`: any other SFTConfig key."""
    from geospot.train.sft import SFTConfig, train

    base = dict(model_name=TINY, lora_rank=0, data=data, eval_n=0, prompt_style="both", answer_decimals=1,
                batch_size=16, learning_rate=5e-3, lr_schedule="cosine", warmup_steps=3, max_steps=max_steps,
                save_every=0, log_path=str(log), behavior_if_log_dir_exists="raise")
    train(SFTConfig(**{**base, **overrides}), stderr=io.StringIO())
    return log
