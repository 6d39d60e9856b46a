"""Box-prompted segmentation: SAM (ViT-B/L/H), MobileSAM (``vit_t``) or SAM 2 (Hiera, image predictor) when a
checkpoint is available, OpenCV GrabCut otherwise.

MobileSAM is SAM with a TinyViT image encoder distilled from ViT-H (same prompt encoder and mask decoder), ~10M
parameters instead of 94M+: mining on small GPUs and CPUs. Its code comes from the ``mobilesam-mirror``
package, a byte-identical copy of the ``mobile_sam`` package of the official repository
(ChaoningZhang/MobileSAM), and runs through segment_anything's ``SamPredictor`` like the other SAM models.

Every mask is clipped to its box: the box is the detector's claim about where the object is, and a mask that
spills past it almost always grabbed a neighbouring object or the background.
"""

from __future__ import annotations

import importlib
from abc import abstractmethod
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch

from unieditkit.errors import UserError

from .base import Segmenter, box_window, check_boxes, check_image, clip_mask_to_box
from .device import resolve_device
from .random_init import seeded
from .weights import SAM2_CHECKPOINTS, load_checked, load_state_dict


def _build_tiny_sam():
    """A ~4M-parameter SAM from the package's own classes (256 px input, 2 encoder blocks): the same code path
    as the real models, fast enough for unit tests."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    image_size, patch, prompt_dim = 256, 16, 256
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=image_size, patch_size=patch, depth=2, embed_dim=192, num_heads=3, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=[1], window_size=8, out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim, image_embedding_size=(image_size // patch, image_size // patch),
            input_image_size=(image_size, image_size), mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=512, num_heads=8),
            transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def _mobile_sam_modules() -> Any:
    import warnings

    with warnings.catch_warnings():  # its TinyViT registers timm model names timm already has, via a deprecated path
        warnings.simplefilter("ignore")
        # the module, not the package attribute: mobile_sam/__init__ rebinds ``build_sam`` to a function
        return importlib.import_module("mobile_sam.build_sam")


def _build_mobile_sam() -> torch.nn.Module:
    """MobileSAM ``vit_t`` exactly as its repository builds it (TinyViT-5M encoder at 1024 px)."""
    return _mobile_sam_modules().build_sam_vit_t(None)


def _build_tiny_mobile_sam() -> torch.nn.Module:
    """MobileSAM from the package's own classes with a thin TinyViT (one block per stage, narrow early stages):
    the same code path as ``vit_t`` for tests. The input stays 1024 px and the last stage 320 wide, which
    TinyViT's code assumes."""
    m = _mobile_sam_modules()
    return m.Sam(
        image_encoder=m.TinyViT(img_size=1024, in_chans=3, num_classes=1000, embed_dims=[16, 32, 48, 320],
                                depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 10], window_sizes=[7, 7, 14, 7],
                                mlp_ratio=4.0, drop_rate=0.0, drop_path_rate=0.0, use_checkpoint=False,
                                mbconv_expand_ratio=4.0, local_conv_size=3, layer_lr_decay=0.8),
        prompt_encoder=m.PromptEncoder(embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
                                       mask_in_chans=16),
        mask_decoder=m.MaskDecoder(num_multimask_outputs=3, transformer=m.TwoWayTransformer(
            depth=2, embedding_dim=256, mlp_dim=512, num_heads=8), transformer_dim=256, iou_head_depth=3,
            iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def _sam_builders() -> dict[str, Callable[[], torch.nn.Module]]:
    from segment_anything import sam_model_registry

    return {"vit_b": sam_model_registry["vit_b"], "vit_l": sam_model_registry["vit_l"],
            "vit_h": sam_model_registry["vit_h"], "vit_t": _build_mobile_sam, "tiny": _build_tiny_sam,
            "tiny_t": _build_tiny_mobile_sam}


class PromptedSegmenter(Segmenter):
    """A segmenter that embeds the image once and decodes all its boxes in one call (SAM, MobileSAM, SAM 2):
    the checks, the empty case and the clipping to each box are the same for all of them."""

    @torch.inference_mode()
    def segment(self, image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
        check_image(image)
        boxes = check_boxes(boxes, image.shape)
        if len(boxes) == 0:
            return []
        return [clip_mask_to_box(mask, box) for mask, box in zip(self._predict(image, boxes), boxes)]

    @abstractmethod
    def _predict(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``N x H x W`` masks, one per box, before clipping."""


class SamSegmenter(PromptedSegmenter):
    """Segment Anything with box prompts: one image embedding per image, all its boxes decoded in one call.

    ``model_type`` is ``vit_b``/``vit_l``/``vit_h``, ``vit_t`` (MobileSAM, recorded as ``mobile_sam``), or the small
    test configs ``tiny`` (SAM) and ``tiny_t`` (MobileSAM); ``checkpoint=None`` gives seeded random weights.
    """

    name = "sam"

    def __init__(self, model_type: str = "vit_b", checkpoint: str | Path | None = None, device: str = "cpu") -> None:
        from segment_anything import SamPredictor

        builders = _sam_builders()
        if model_type not in builders:
            raise UserError(f"--sam-model {model_type}: unknown; choose one of vit_b, vit_l, vit_h, vit_t")
        self.name = "mobile_sam" if model_type in ("vit_t", "tiny_t") else "sam"
        self.device = resolve_device(device)
        with seeded(0):
            sam = builders[model_type]()
        if checkpoint is not None:
            try:
                load_checked(sam, load_state_dict(checkpoint, "--sam-checkpoint"), "sam", "--sam-checkpoint", checkpoint)
            except UserError as err:
                raise UserError(f"{err} (--sam-model {model_type})") from None
        sam.to(self.device).eval()
        self.predictor = SamPredictor(sam)

    @torch.inference_mode()
    def segment_batch(self, items: Sequence[tuple[np.ndarray, np.ndarray]], batch_size: int = 8) -> list[list[np.ndarray]]:
        """``segment`` of each ``(image, boxes)`` with the image encoder (nearly all of SAM's cost) run on up to
        ``batch_size`` images at once. SAM pads every image to the same square before the encoder, so an image's
        embedding does not depend on its batch-mates: the masks equal ``segment``'s (``tests/models/test_segment.py``)."""
        if batch_size < 1:
            raise UserError(f"segmenter batch_size {batch_size}: must be at least 1 (stages.yaml batch_size)")
        checked = [(check_image(image, f"image {i}"), check_boxes(boxes, image.shape)) for i, (image, boxes) in enumerate(items)]
        todo = [i for i, (_, boxes) in enumerate(checked) if len(boxes)]
        results: list[list[np.ndarray]] = [[] for _ in items]
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            for i, embedding in zip(chunk, self._embed([checked[i][0] for i in chunk])):
                image, boxes = checked[i]
                results[i] = [clip_mask_to_box(m, b) for m, b in zip(self._decode(embedding, image, boxes), boxes)]
        return results

    def _predict(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        return self._decode(self._embed([image])[0], image, boxes)

    def _embed(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """``SamPredictor.set_image``'s resize and padding per image, then one encoder pass for all of them."""
        transform, model = self.predictor.transform, self.predictor.model
        inputs = [torch.as_tensor(transform.apply_image(image), device=self.device).permute(2, 0, 1).contiguous()[None]
                  for image in images]
        features = model.image_encoder(torch.cat([model.preprocess(t) for t in inputs]))
        return [features[i : i + 1] for i in range(len(images))]

    def _decode(self, features: torch.Tensor, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """All boxes of one image from its embedding, through ``SamPredictor.predict_torch``; the predictor's
        image state is set as ``set_torch_image`` sets it (features, original and resized size)."""
        predictor = self.predictor
        predictor.features, predictor.is_image_set = features, True
        predictor.original_size = image.shape[:2]
        predictor.input_size = predictor.transform.get_preprocess_shape(*image.shape[:2], predictor.transform.target_length)
        try:
            prompt = torch.as_tensor(boxes, dtype=torch.float32, device=self.device)
            prompt = predictor.transform.apply_boxes_torch(prompt, image.shape[:2])
            masks, _, _ = predictor.predict_torch(None, None, boxes=prompt, multimask_output=False)
        finally:
            predictor.reset_image()
        return masks[:, 0].cpu().numpy()


#: hydra overrides that shrink SAM 2 Hiera-T for tests (16-dim trunk, 5 blocks): the same classes and code path,
#: seconds instead of minutes per image on a CPU. The image size stays 1024: the image predictor assumes it.
TINY_SAM2_OVERRIDES: tuple[str, ...] = (
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    "++model.memory_attention.num_layers=1",
)


def sam2_config_path(config: str) -> str:
    """The hydra config path inside the ``sam2`` package for a config name (``sam2.1_hiera_t``)."""
    if config not in SAM2_CHECKPOINTS:
        raise UserError(f"--sam2-config {config}: unknown; choose one of {', '.join(SAM2_CHECKPOINTS)}")
    version = "sam2.1" if config.startswith("sam2.1") else "sam2"
    return f"configs/{version}/{config}.yaml"


def build_sam2_checked(builder: Callable[..., Any], config: str, checkpoint: str | Path | None, overrides: Sequence[str]) -> Any:
    """A SAM 2 model from ``builder`` (``build_sam2`` or ``build_sam2_video_predictor``) on the CPU: seeded
    random weights, then the checkpoint's, checked key by key; shared by the segmenter and the video tracker so
    both refuse a checkpoint that does not fit their config the same way."""
    with seeded(0):
        model = builder(sam2_config_path(config), None, device="cpu", hydra_overrides_extra=list(overrides))
    if checkpoint is not None:
        state = load_state_dict(checkpoint, "--sam2-checkpoint")
        try:
            load_checked(model, state, "sam2", "--sam2-checkpoint", checkpoint)
        except UserError as err:
            raise UserError(f"{err} (--sam2-config {config})") from None
    return model


class Sam2Segmenter(PromptedSegmenter):
    """SAM 2 image prediction (``SAM2ImagePredictor``) with box prompts: one ``set_image`` per image, all its
    boxes in one ``predict``. ``config`` is a SAM 2 config name (``sam2.1_hiera_t`` ... ``sam2.1_hiera_l``);
    ``checkpoint=None`` gives seeded random weights; ``overrides`` are hydra overrides (tests shrink the model).
    """

    name = "sam2"

    def __init__(self, config: str = "sam2.1_hiera_t", checkpoint: str | Path | None = None, device: str = "cpu",
                 overrides: tuple[str, ...] = ()) -> None:
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.device = resolve_device(device)
        model = build_sam2_checked(build_sam2, config, checkpoint, overrides)
        self.predictor = SAM2ImagePredictor(model.to(self.device).eval())

    def _predict(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        self.predictor.set_image(image)
        try:
            masks, _, _ = self.predictor.predict(box=boxes, multimask_output=False)
        finally:
            self.predictor.reset_predictor()
        return masks.reshape(len(boxes), -1, *image.shape[:2])[:, 0] > 0


class GrabCutSegmenter(Segmenter):
    """Classical fallback: OpenCV GrabCut initialised with the box, run on a crop around it.

    Works with no weights at all, at lower quality than SAM (it separates colours, not objects); the crop keeps
    it fast and keeps far-away pixels of similar colour out of the background model. ``max_side`` bounds the
    crop's longer side (the crop is scaled down before GrabCut and the mask scaled back).
    """

    name = "grabcut"

    def __init__(self, iterations: int = 5, margin: float = 0.15, max_side: int = 384, seed: int = 0) -> None:
        if iterations < 1 or margin < 0 or max_side < 16:
            raise UserError("GrabCutSegmenter: need iterations >= 1, margin >= 0 and max_side >= 16")
        self.iterations = iterations
        self.margin = margin
        self.max_side = max_side
        self.seed = seed

    def segment(self, image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
        check_image(image)
        boxes = check_boxes(boxes, image.shape)
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        return [clip_mask_to_box(self._one(bgr, box), box) for box in boxes]

    def _one(self, bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        bx0, by0, bx1, by1 = box_window(box, bgr.shape)
        pad_x = int(round((bx1 - bx0) * self.margin)) + 2
        pad_y = int(round((by1 - by0) * self.margin)) + 2
        cx0, cy0, cx1, cy1 = max(0, bx0 - pad_x), max(0, by0 - pad_y), min(w, bx1 + pad_x), min(h, by1 + pad_y)
        crop = bgr[cy0:cy1, cx0:cx1]
        scale = min(1.0, self.max_side / max(crop.shape[:2]))
        if scale < 1.0:
            size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
            crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        ch, cw = crop.shape[:2]
        rx0, ry0 = int((bx0 - cx0) * scale), int((by0 - cy0) * scale)
        rx1, ry1 = min(cw, int(np.ceil((bx1 - cx0) * scale))), min(ch, int(np.ceil((by1 - cy0) * scale)))
        # GrabCut needs background samples outside the rectangle: keep a 1-pixel frame even for a full-image box
        rx0, ry0, rx1, ry1 = max(rx0, 1), max(ry0, 1), min(rx1, cw - 1), min(ry1, ch - 1)
        full = np.zeros((h, w), dtype=bool)
        if rx1 - rx0 < 2 or ry1 - ry0 < 2:
            return full
        labels = np.zeros((ch, cw), np.uint8)
        cv2.setRNGSeed(self.seed)
        cv2.grabCut(crop, labels, (rx0, ry0, rx1 - rx0, ry1 - ry0), np.zeros((1, 65), np.float64),
                    np.zeros((1, 65), np.float64), self.iterations, cv2.GC_INIT_WITH_RECT)
        fg = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
        if scale < 1.0:
            fg = cv2.resize(fg, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_NEAREST)
        full[cy0:cy1, cx0:cx1] = fg.astype(bool)
        return full
