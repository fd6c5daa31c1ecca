"""An image-only processor for the Qwen-VL families that needs neither torchvision nor
transformers' processor classes.

Why our own: without torchvision, transformers cannot build the Qwen-VL processors
(VIDEO_PROCESSOR_MAPPING), and `AutoProcessor` on such a folder silently returns only the
tokenizer. Images are all we need, and the maths is small: resize so both sides are
multiples of patch*merge within a pixel budget (`smart_resize`, the same rule as
transformers), normalise, and cut into flat patches in the order the vision tower expects.

It reads and writes the standard `preprocessor_config.json`, so a folder it saves is also
loadable by transformers' own Qwen2VLImageProcessor where torchvision exists.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(h, w) divisible by `factor`, pixel count within [min_pixels, max_pixels], aspect kept.
    Identical to transformers' `qwen2_vl.image_processing_qwen2_vl.smart_resize`."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"image aspect ratio {max(height, width) / min(height, width):.0f} is above 200; crop it first"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class ImageProcessor:
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280

    @property
    def factor(self) -> int:
        """Pixels per merged image token along one side (28 for patch 14, merge 2)."""
        return self.patch_size * self.merge_size

    # -- resizing -------------------------------------------------------------------------

    def target_size(self, width: int, height: int, max_pixels: int | None = None) -> tuple[int, int]:
        """(width, height) the model sees an image at under the given pixel budget."""
        budget = min(self.max_pixels, max_pixels) if max_pixels else self.max_pixels
        h, w = smart_resize(height, width, self.factor, min(self.min_pixels, budget), budget)
        return w, h

    def resize(self, image: Image.Image, max_pixels: int | None = None) -> Image.Image:
        image = image.convert("RGB") if image.mode != "RGB" else image
        size = self.target_size(image.width, image.height, max_pixels)
        return image if size == image.size else image.resize(size, Image.BICUBIC)

    def grid_thw(self, image: Image.Image) -> tuple[int, int, int]:
        """Patch grid of an image already at a valid size."""
        if image.width % self.factor or image.height % self.factor:
            raise ValueError(
                f"image {image.width}x{image.height} is not a multiple of {self.factor} px; resize it with "
                "ImageProcessor.resize (the renderer does this)"
            )
        return (1, image.height // self.patch_size, image.width // self.patch_size)

    def num_tokens(self, image: Image.Image) -> int:
        t, h, w = self.grid_thw(image)
        return t * h * w // self.merge_size**2

    # -- pixels ---------------------------------------------------------------------------

    def patchify(self, image: Image.Image) -> np.ndarray:
        """float32 [num_patches, C*tp*p*p] for one already-resized image, patches in the
        (merge-block row, merge-block col, row in block, col in block) order the tower wants."""
        t, gh, gw = self.grid_thw(image)
        p, m, tp = self.patch_size, self.merge_size, self.temporal_patch_size
        x = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        x = (x - np.asarray(self.image_mean, np.float32)) / np.asarray(self.image_std, np.float32)
        x = x.transpose(2, 0, 1)  # C, H, W
        c = x.shape[0]
        x = x.reshape(c, gh // m, m, p, gw // m, m, p).transpose(1, 4, 2, 5, 0, 3, 6)
        # a still image is one frame repeated over the temporal patch
        x = np.broadcast_to(x[:, :, :, :, :, None], (*x.shape[:5], tp, p, p))
        return np.ascontiguousarray(x.reshape(gh * gw, c * tp * p * p))

    def __call__(self, images: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        """(pixel_values [sum patches, D], image_grid_thw [N, 3]) for already-resized images."""
        if not images:
            return torch.zeros(0), torch.zeros(0, 3, dtype=torch.long)
        pixels = np.concatenate([self.patchify(im) for im in images])
        grids = np.array([self.grid_thw(im) for im in images], dtype=np.int64)
        return torch.from_numpy(pixels), torch.from_numpy(grids)

    # -- persistence ----------------------------------------------------------------------

    def to_hf_dict(self) -> dict:
        d = asdict(self)
        d.update(
            image_mean=list(self.image_mean),
            image_std=list(self.image_std),
            size={"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
            image_processor_type="Qwen2VLImageProcessor",
            do_resize=True, do_rescale=True, rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True,
            resample=3,
        )
        return d

    def save_pretrained(self, folder: str | Path) -> None:
        Path(folder, "preprocessor_config.json").write_text(json.dumps(self.to_hf_dict(), indent=2))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> ImageProcessor:
        path = Path(folder, "preprocessor_config.json")
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: the model folder has no image processor config")
        d = json.loads(path.read_text())
        size = d.get("size") or {}
        default = cls()  # a key the file lacks keeps the dataclass default
        return cls(
            patch_size=int(d.get("patch_size", default.patch_size)),
            temporal_patch_size=int(d.get("temporal_patch_size", default.temporal_patch_size)),
            merge_size=int(d.get("merge_size", default.merge_size)),
            image_mean=tuple(d.get("image_mean", default.image_mean)),
            image_std=tuple(d.get("image_std", default.image_std)),
            min_pixels=int(d.get("min_pixels") or size.get("shortest_edge") or default.min_pixels),
            max_pixels=int(d.get("max_pixels") or size.get("longest_edge") or default.max_pixels),
        )
