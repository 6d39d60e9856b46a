"""``unieditkit eval``: the paper's metrics for an editor's outputs on held-out shards.

For every held-out sample and every mask variant the editor was given (fine / rough / box), the generated
object — the prediction cropped to the ground-truth object box — is compared with the reference object:

* **CLIP-I**: cosine similarity of open_clip image embeddings (generated object vs ``ref.jpg``);
* **DINO-I**: the same with DINOv2 ViT-S/14 features, which track identity more closely than CLIP;

and the table reports each metric per mask variant, which is A2-Edit's robustness comparison: a
mask-robust editor scores the same with rough masks and boxes as with fine masks.

Predictions layout: ``PRED_DIR/{key}.{variant}.png`` (or ``.jpg``), the full edited target image for that
sample and mask variant (resized to the target's size if it differs). Missing predictions are counted.
"""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from unieditkit.errors import MissingModelError, UserError
from unieditkit.format import MASK_VARIANTS, TAR_SUFFIX, find_done_shards

DINO_ARCH = "vit_small_patch14_dinov2"
DINO_HINT = (
    "download DINOv2 ViT-S/14 weights (e.g. `huggingface-cli download timm/vit_small_patch14_dinov2.lvd142m "
    "model.safetensors`) and pass --dino-weights FILE, or --no-dino"
)


@dataclass(frozen=True)
class HeldOut:
    key: str
    ref: np.ndarray
    bbox: tuple[int, int, int, int]
    size: tuple[int, int]


def held_out(data: Path, split: str, domain: str) -> Iterator[HeldOut]:
    """Samples of ``split`` (all domains, or one) read straight from the tars, in key order."""
    import webdataset as wds

    tars = [data / f"{name}{TAR_SUFFIX}" for name in find_done_shards(data, split, [domain] if domain else [])]
    if not tars:
        raise UserError(f"{data}: no {split} shards{' of ' + domain if domain else ''}; build them first or pick another --split")
    samples = wds.WebDataset([str(t) for t in tars], shardshuffle=False, empty_check=False)
    for s in sorted(samples, key=lambda s: s["__key__"]):
        meta = json.loads(s["json"])
        ref = np.asarray(Image.open(io.BytesIO(s["ref.jpg"])).convert("RGB"))
        yield HeldOut(s["__key__"], ref, tuple(meta["bbox"]), tuple(meta["tgt_size"]))


def find_prediction(pred: Path, key: str, variant: str) -> Path | None:
    for ext in ("png", "jpg", "jpeg"):
        p = pred / f"{key}.{variant}.{ext}"
        if p.is_file():
            return p
    return None


def generated_object(path: Path, sample: HeldOut) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    if img.size != sample.size:
        img = img.resize(sample.size, Image.BICUBIC)
    return np.asarray(img.crop(sample.bbox))


class ClipEmbedder:
    def __init__(self, model: str, pretrained: str | None, device: str) -> None:
        from pipelines.models.openclip import OpenClipModel

        self.clip = OpenClipModel(model, pretrained, device, "--clip-pretrained")

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            f = self.clip.model.encode_image(self.clip.image_batch(images)).float()
        return torch.nn.functional.normalize(f, dim=-1).cpu().numpy()


class DinoEmbedder:
    """DINOv2 ViT-S/14 from timm, weights from a local file (torch.hub would need the network)."""

    def __init__(self, weights: str | None, device: str) -> None:
        import timm
        import torch

        if weights is None:
            with torch.random.fork_rng():  # seeded, so random-weight runs are reproducible
                torch.manual_seed(0)
                self.model = timm.create_model(DINO_ARCH, pretrained=False, num_classes=0, img_size=224)
        else:
            path = Path(weights)
            if not path.is_file():
                raise MissingModelError(f"--dino-weights {weights}: file not found; {DINO_HINT}")
            self.model = timm.create_model(DINO_ARCH, pretrained=True, num_classes=0, img_size=224,
                                           pretrained_cfg_overlay={"file": str(path)})
        self.model = self.model.eval().to(device)
        self.device = device
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        batch = torch.stack([torch.from_numpy(np.array(Image.fromarray(i).resize((224, 224), Image.BICUBIC))).permute(2, 0, 1) for i in images])
        batch = ((batch.float() / 255 - self.mean) / self.std).to(self.device)
        with torch.inference_mode():
            f = self.model(batch).float()
        return torch.nn.functional.normalize(f, dim=-1).cpu().numpy()


def evaluate(pred: Path, data: Path, split: str, domain: str, embedders: dict) -> dict:
    """Mean similarity per (metric, variant) plus counts; ``embedders`` maps metric name → embedder."""
    if not pred.is_dir():
        raise UserError(f"--pred {pred}: not a folder; it should hold KEY.VARIANT.png predictions")
    sums = {m: {v: 0.0 for v in MASK_VARIANTS} for m in embedders}
    counts = {v: 0 for v in MASK_VARIANTS}
    missing = {v: 0 for v in MASK_VARIANTS}
    n = 0
    for sample in held_out(data, split, domain):
        n += 1
        for variant in MASK_VARIANTS:
            path = find_prediction(pred, sample.key, variant)
            if path is None:
                missing[variant] += 1
                continue
            obj = generated_object(path, sample)
            counts[variant] += 1
            for metric, embed in embedders.items():
                a, b = embed([obj, sample.ref])
                sums[metric][variant] += float(a @ b)
    table = {m: {v: (sums[m][v] / counts[v] if counts[v] else None) for v in MASK_VARIANTS} for m in embedders}
    return {"samples": n, "evaluated": counts, "missing": missing, "metrics": table}


def format_table(result: dict) -> str:
    metrics = list(result["metrics"])
    lines = ["| mask | n | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for v in MASK_VARIANTS:
        vals = [result["metrics"][m][v] for m in metrics]
        lines.append(f"| {v} | {result['evaluated'][v]} | " + " | ".join("—" if x is None else f"{100 * x:.2f}" for x in vals) + " |")
    if any(result["missing"].values()):
        lines.append("missing predictions: " + ", ".join(f"{v} {n}" for v, n in result["missing"].items() if n))
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="CLIP-I / DINO-I of an editor's outputs per mask variant (fine, rough, box)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--pred", required=True, help="folder of predictions KEY.VARIANT.png (VARIANT: fine, rough, box)")
    p.add_argument("--data", required=True, help="dataset folder written by `unieditkit build`")
    p.add_argument("--split", default="test")
    p.add_argument("--domain", default="", help="only this domain")
    p.add_argument("--clip-model", default="ViT-B-32")
    p.add_argument("--clip-pretrained", default="laion2b_s34b_b79k", help="open_clip tag or weights file")
    p.add_argument("--dino-weights", default=None, help="DINOv2 ViT-S/14 weights file (timm layout)")
    p.add_argument("--no-dino", action="store_true", help="CLIP-I only")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--json", default="", help="also write the result as JSON here")
    p.add_argument("--random-weights", action="store_true", help="PLUMBING TEST ONLY: random CLIP/DINO weights; scores are meaningless")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.no_dino and args.dino_weights is None and not args.random_weights:
        raise MissingModelError(f"DINO-I needs DINOv2 weights: {DINO_HINT}")
    from pipelines.models.device import resolve_device

    device = str(resolve_device(args.device))
    embedders: dict = {"CLIP-I": ClipEmbedder(args.clip_model, None if args.random_weights else args.clip_pretrained, device)}
    if not args.no_dino:
        embedders["DINO-I"] = DinoEmbedder(None if args.random_weights else args.dino_weights, device)
    result = evaluate(Path(args.pred), Path(args.data), args.split, args.domain, embedders)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0
