"""fp32 master copies of the trainable parameters a model holds in bf16 or fp16 (issue 23).

Adam's first steps move each weight by about the learning rate. A bf16 weight w only changes
when the step exceeds half its rounding step, |w| * 2^-8: at lr 1e-5 that is every weight with
|w| above ~0.004, most of a model's weights, so a full fine-tuning step applied in bf16 is mostly
rounded away (docs/gpu.md measured 84 % lost). The usual cure, kept on the optimizer's side:

- the optimizer owns an fp32 copy of each low-precision trainable parameter;
- after backward, each parameter's gradient moves to its copy as fp32 (and is freed on the model);
- clipping and the Adam step run on the fp32 copies; the result is cast back into the model.

The model itself stays in its dtype, so sampling, the KV cache and the vision cache see the
same weights and kernels as before. fp32 parameters (tiny CPU models; PEFT's LoRA adapters, which
PEFT keeps in fp32) are their own master: nothing is copied and the step is unchanged.
Under FSDP2 the parameters are shards (DTensor) and so are their copies: each rank keeps fp32
copies of its shards only. Checkpoints store the fp32 values (local_state.py), so resume is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

LOW_PRECISION = (torch.bfloat16, torch.float16)


class MasterWeights:
    """The parameters the optimizer steps: fp32 copies of the low-precision trainable ones, the
    fp32 ones themselves. `values` (name -> tensor on the parameter's device, for each
    low-precision parameter) seeds the copies, e.g. a checkpoint's fp32 weights, and is taken
    over without a copy where it is fp32 already; by default the parameters' own values."""

    def __init__(self, trainable: Sequence[tuple[str, torch.nn.Parameter]],
                 values: dict[str, torch.Tensor] | None = None):
        self.names = [n for n, _ in trainable]
        self.model_params = [p for _, p in trainable]
        self.params: list[torch.nn.Parameter] = []
        for n, p in trainable:
            if p.dtype in LOW_PRECISION:
                v = values[n] if values is not None else p
                self.params.append(torch.nn.Parameter(v.detach().to(torch.float32, copy=values is None)))
            else:
                self.params.append(p)

    @property
    def copied(self) -> int:
        """How many parameters have an fp32 copy (0: the optimizer steps the model's own)."""
        return sum(m is not p for m, p in zip(self.params, self.model_params))

    def named(self) -> list[tuple[str, torch.Tensor]]:
        """(name, fp32 value) per trainable parameter: what a checkpoint stores."""
        return list(zip(self.names, self.params))

    def take_grads(self) -> None:
        """Move each copied parameter's gradient onto its fp32 copy (call after the gradients
        are complete, i.e. after the ranks' reduction)."""
        for m, p in zip(self.params, self.model_params):
            if m is not p:
                m.grad = None if p.grad is None else p.grad.to(torch.float32)
                p.grad = None

    @torch.no_grad()
    def write_back(self) -> None:
        """Cast the stepped fp32 copies into the model's parameters (round to nearest)."""
        for m, p in zip(self.params, self.model_params):
            if m is not p:
                p.copy_(m)
