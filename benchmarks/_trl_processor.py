"""A processor TRL's GRPOTrainer accepts for our Qwen-VL models, built from our tokenizer and our
image-only processor (no torchvision, which transformers' Qwen-VL processors need).

What TRL 1.16 asks of a VLM `processing_class` (read from trl/trainer/grpo_trainer.py):
- `isinstance(p, ProcessorMixin)` (that is how it decides the model is a VLM) and `p.tokenizer`;
- `p.apply_chat_template(conversation=[...], add_generation_prompt=True, tokenize=True,
  return_dict=True)` -> input_ids as lists + the multimodal fields (pixel_values, image_grid_thw,
  mm_token_type_ids) for generation; with `tokenize=False` the prompt text;
- `p(images=[[img], ...], text=[...], padding=True, return_tensors="pt")` -> the same fields for the
  training forward pass, left-padded like TRL's prompt ids;
- `p.batch_decode(ids, skip_special_tokens=True)`; `p.image_processor.merge_size`.

Images are resized exactly as our engine's renderer does (same pixel budget), so both sides see the
same pixels and the same number of image tokens.
"""

from __future__ import annotations

import torch
from transformers import BatchFeature, ProcessorMixin

IMAGE_PAD = "<|image_pad|>"


class TRLQwenVLProcessor(ProcessorMixin):
    attributes: list[str] = []  # nothing for ProcessorMixin to validate or save

    def __init__(self, tokenizer, image_processor, max_pixels: int):
        # ProcessorMixin.__init__ would check sub-processor classes against transformers' registry
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.max_pixels = max_pixels
        self.chat_template = tokenizer.chat_template
        self.image_pad_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)

    # -- text ----------------------------------------------------------------------------------

    @staticmethod
    def _strip_images(conversation):
        return [{**m, "content": [{"type": "image"} if p.get("type") == "image" else p for p in m["content"]]}
                if isinstance(m.get("content"), list) else m for m in conversation]

    @staticmethod
    def _images_of(conversation):
        return [p["image"] for m in conversation if isinstance(m.get("content"), list)
                for p in m["content"] if p.get("type") == "image" and p.get("image") is not None]

    def apply_chat_template(self, conversation, chat_template=None, tools=None, add_generation_prompt=False,
                            tokenize=False, return_dict=False, continue_final_message=False, **kwargs):
        batched = bool(conversation) and isinstance(conversation[0], list)
        convs = conversation if batched else [conversation]
        texts = [self.tokenizer.apply_chat_template(self._strip_images(c), tokenize=False, tools=tools,
                                                    add_generation_prompt=add_generation_prompt,
                                                    continue_final_message=continue_final_message)
                 for c in convs]
        if not tokenize:
            return texts if batched else texts[0]
        images = [self._images_of(c) for c in convs]
        out = self(text=texts, images=images if any(images) else None, padding=False, return_tensors=None)
        if not return_dict:
            return out["input_ids"]
        return out

    # -- text + images -------------------------------------------------------------------------

    def __call__(self, images=None, text=None, padding=False, return_tensors=None, **kwargs):
        texts = [text] if isinstance(text, str) else list(text)
        flat = []
        if images is not None:
            nested = all(im is None or isinstance(im, (list, tuple)) for im in images)
            per_text = list(images) if nested else [[im] for im in images]
            if len(per_text) != len(texts):
                raise ValueError(f"{len(per_text)} image lists for {len(texts)} texts")
            expanded = []
            for t, ims in zip(texts, per_text):
                ims = [self.image_processor.resize(im, self.max_pixels) for im in (ims or [])]
                parts = t.split(IMAGE_PAD)
                if len(parts) - 1 != len(ims):
                    raise ValueError(f"text has {len(parts) - 1} {IMAGE_PAD} placeholders for {len(ims)} images")
                s = parts[0]
                for im, rest in zip(ims, parts[1:]):
                    s += IMAGE_PAD * self.image_processor.num_tokens(im) + rest
                expanded.append(s)
                flat.extend(ims)
            texts = expanded
        enc = self.tokenizer(texts, add_special_tokens=False, padding=padding, padding_side="left",
                             return_tensors=return_tensors)
        data = dict(enc)
        ids = enc["input_ids"]
        if isinstance(ids, torch.Tensor):
            data["mm_token_type_ids"] = (ids == self.image_pad_id).long()
        else:
            data["mm_token_type_ids"] = [[int(t == self.image_pad_id) for t in row] for row in ids]
        if flat:
            pixel_values, grid = self.image_processor(flat)
            data["pixel_values"], data["image_grid_thw"] = pixel_values, grid
        return BatchFeature(data=data)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    def __repr__(self) -> str:
        return f"TRLQwenVLProcessor(max_pixels={self.max_pixels})"
