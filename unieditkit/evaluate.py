"""``unieditkit eval``: an editor's outputs on held-out shards, scored against the reference, against the ground
truth, and beside two trivial editors, so every number says how far the editor is above doing nothing.

For every held-out sample and every mask variant the editor was given (fine / rough / box), the edit is the
prediction inside that mask over the target outside it (``unieditkit edit`` keeps every pixel outside the mask;
compositing here holds any other editor to the same rule, so only generated pixels are scored). Metrics:

* **CLIP-I** / **DINO-I** (higher is better): cosine similarity between the edit cropped to the ground-truth
  object box and the reference object (``ref.jpg``), with open_clip and DINOv2 ViT-S/14 embeddings; DINO tracks
  identity more closely than CLIP;
* **PSNR** / **SSIM** (higher is better, no weights): masked PSNR (dB) and SSIM against the target over the
  mask's pixels (:mod:`unieditkit.metrics`), averaged over samples;
* **LPIPS** (lower is better): torchmetrics' LPIPS (AlexNet) between the edit and the target, both cropped to
  the mask's box and stretched to 224 x 224;
* **FID** (lower is better): torchmetrics' Fréchet distance between Inception-v3 features of the target crops
  and of the edit crops (same boxes as LPIPS) of a row's samples. FID needs many samples to settle; each FID
  is printed with its sample count, and below 2 samples it is undefined.

Baselines (``unieditkit.baselines``), computed from the data itself on the same samples and masks:
``mean-fill`` (the mask filled with the visible mean colour) and ``paste-ref`` (the reference object stretched
into the mask's box). Rows come per mask variant — A2-Edit's robustness comparison: a mask-robust editor
scores about the same with rough masks and boxes as with fine masks — for all samples and per domain (printed)
and per subcategory (in ``--json``).

Predictions layout: ``PRED_DIR/{key}.{variant}.png`` (or ``.jpg``), the full edited target image for that
sample and mask variant (resized to the target's size if it differs). A missing prediction stops the run with
exit status 1 before anything is scored: scores over a subset would not be comparable with anyone's.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
from PIL import Image

from unieditkit.baselines import BASELINES
from unieditkit.errors import MissingModelError, UserError
from unieditkit.extras import require_extra
from unieditkit.format import (
    MASK_VARIANTS, META_MEMBER, REF_IMAGE, REF_MASK, SPLITS, TAR_SUFFIX, TARGET_IMAGE, describe_splits, find_done_shards,
    local_split_sizes, mask_member,
)
from unieditkit.metrics import masked_psnr, masked_ssim

if TYPE_CHECKING:
    import torch

DINO_ARCH = "vit_small_patch14_dinov2"
DINO_HINT = (
    "download DINOv2 ViT-S/14 weights (e.g. `huggingface-cli download timm/vit_small_patch14_dinov2.lvd142m "
    "model.safetensors`) and pass --dino-weights FILE, or --no-dino"
)
LPIPS_HINT = (
    "download torchvision's ImageNet AlexNet (https://download.pytorch.org/models/alexnet-owt-7be5be79.pth) and "
    "pass --lpips-weights FILE, or --no-lpips"
)
FID_HINT = (
    "download torch-fidelity's Inception-v3 (https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth) and pass --fid-weights FILE, or --no-fid"
)
#: the editor whose predictions are read from ``--pred``; the baselines' rows carry their ``BASELINES`` names
MODEL = "model"
#: metric → whether a higher value is better
HIGHER_IS_BETTER = {"CLIP-I": True, "DINO-I": True, "PSNR": True, "SSIM": True, "LPIPS": False, "FID": False}
#: LPIPS input side: AlexNet's ImageNet resolution (one size, so a batch holds every editor's crop)
LPIPS_SIZE = 224


@dataclass(frozen=True)
class HeldOut:
    key: str
    domain: str
    subcategory: str
    ref: np.ndarray
    ref_mask: np.ndarray
    target: np.ndarray
    masks: dict[str, np.ndarray]
    bbox: tuple[int, int, int, int]


def _tars(data: Path, split: str, domain: str) -> list[Path]:
    tars = [data / f"{name}{TAR_SUFFIX}" for name in find_done_shards(data, split, [domain] if domain else [])]
    if not tars:
        which = f" of {domain}" if domain else ""
        present = local_split_sizes(data, [domain] if domain else [])
        if present:
            raise UserError(f"--data {data}: no finished {split} shards{which}; it has {describe_splits(present)}: "
                            "pick one of those with --split")
        raise UserError(f"--data {data}: no finished shards{which}; run `unieditkit build` into that folder first")
    return tars


def held_out(data: Path, split: str, domain: str) -> Iterator[HeldOut]:
    """Samples of ``split`` (all domains, or one) read straight from the tars, in key order."""
    import webdataset as wds

    from unieditkit.imageio import decode_mask, decode_rgb

    samples = wds.WebDataset([str(t) for t in _tars(data, split, domain)], shardshuffle=False, empty_check=False)
    for s in sorted(samples, key=lambda s: s["__key__"]):
        meta = json.loads(s[META_MEMBER])
        yield HeldOut(s["__key__"], meta["domain"], meta["subcategory"], decode_rgb(s[REF_IMAGE], min_side=1),
                      decode_mask(s[REF_MASK]), decode_rgb(s[TARGET_IMAGE], min_side=1),
                      {v: decode_mask(s[mask_member(v)]) for v in MASK_VARIANTS}, tuple(meta["bbox"]))


def held_out_keys(data: Path, split: str, domain: str) -> list[str]:
    """Keys of ``split`` from the tars' member names (webdataset's rule: the name up to its first dot), without
    decoding any image."""
    from webdataset.tariterators import base_plus_ext

    keys: set[str] = set()
    for tar in _tars(data, split, domain):
        with tarfile.open(tar) as t:
            keys.update(k for k, _ in (base_plus_ext(n) for n in t.getnames()) if k)
    return sorted(keys)


def find_prediction(pred: Path, key: str, variant: str) -> Path | None:
    for ext in ("png", "jpg", "jpeg"):
        p = pred / f"{key}.{variant}.{ext}"
        if p.is_file():
            return p
    return None


def missing_predictions(pred: Path, data: Path, split: str, domain: str, variants: tuple[str, ...]) -> tuple[int, list[Path]]:
    """How many predictions the split needs, and the expected ``.png`` path of each one not found."""
    if not pred.is_dir():
        raise UserError(f"--pred {pred}: not a folder; it should hold KEY.VARIANT.png predictions")
    keys = held_out_keys(data, split, domain)
    missing = [pred / f"{k}.{v}.png" for k in keys for v in variants if find_prediction(pred, k, v) is None]
    return len(keys) * len(variants), missing


def missing_line(expected: int, missing: list[Path]) -> str:
    """The one line that stops a run with missing predictions."""
    return (f"{len(missing)} of {expected} predictions missing (e.g. {missing[0]}); nothing was scored: write one "
            "KEY.VARIANT.png per sample and variant (`unieditkit edit --data ...`), or pass --domain / --variants "
            "for the ones you have")


class MissingPredictionsError(Exception):
    """Some predictions are absent (the CLI stops before this with exit status 1; a library caller gets this)."""


def composite(path: Path, sample: HeldOut, mask: np.ndarray) -> np.ndarray:
    """The prediction inside ``mask`` over the target outside it (resized to the target's size if it differs)."""
    img = Image.open(path).convert("RGB")
    size = (sample.target.shape[1], sample.target.shape[0])
    if img.size != size:
        img = img.resize(size, Image.BICUBIC)
    return np.where(mask[..., None], np.asarray(img), sample.target)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the mask's pixels (right and bottom exclusive), as PIL's ``crop`` takes it."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]


class ClipEmbedder:
    def __init__(self, model: str, pretrained: str | None, device: str) -> None:
        from unieditkit.pipelines.models.openclip import OpenClipModel

        self.clip = OpenClipModel(model, pretrained, device, "--clip-pretrained")
        self.random = pretrained is None
        self.weights = f"{model} {pretrained or 'random'}"

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
        self.random = weights is None
        self.weights = weights or "random"
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        batch = torch.stack([torch.from_numpy(np.array(Image.fromarray(i).resize((224, 224), Image.BICUBIC))).permute(2, 0, 1) for i in images])
        batch = ((batch.float() / 255 - self.mean) / self.std).to(self.device)
        with torch.inference_mode():
            f = self.model(batch).float()
        return torch.nn.functional.normalize(f, dim=-1).cpu().numpy()


def _load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], flag: str, path: Path, what: str, hint: str) -> None:
    """Strictly load ``state``: a half-loaded network still returns plausible distances, so a file that does not
    fit is an error naming it."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # torch lists every bad key: keep the first line of them, shortened
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        first = lines[min(1, len(lines) - 1)]
        raise UserError(f"{flag} {path}: does not hold {what} ({first[:160]}{'…' if len(first) > 160 else ''}); {hint}") from None


class LpipsScorer:
    """torchmetrics' LPIPS with the AlexNet backbone.

    The linear calibration layers ship inside torchmetrics (LPIPS v0.1); only the backbone is an ImageNet
    download, which torchmetrics would fetch through torchvision at construction. It is built here with a seeded
    random backbone instead and, unless random weights were asked for, the backbone is loaded from ``weights``
    (torchvision's ``alexnet-owt-7be5be79.pth``, or any file holding its ``features.*`` tensors)."""

    def __init__(self, weights: str | None, device: str) -> None:
        from torchmetrics.functional.image.lpips import _NoTrainLpips

        from unieditkit.pipelines.models.random_init import seeded
        from unieditkit.pipelines.models.weights import load_state_dict

        with seeded(0):
            self.net = _NoTrainLpips(net="alex", pnet_rand=True)
        if weights is not None:
            path = Path(weights)
            if not path.is_file():
                raise MissingModelError(f"--lpips-weights {weights}: file not found; {LPIPS_HINT}")
            state = load_state_dict(path, "--lpips-weights")
            # torchmetrics splits AlexNet's ``features`` into slices that keep each layer's index: slice2.3 is features.3
            wanted = {k: "features." + k.split(".", 1)[1] for k in self.net.net.state_dict()}
            if any(source not in state for source in wanted.values()):
                absent = next(s for s in wanted.values() if s not in state)
                raise UserError(f"--lpips-weights {weights}: no {absent}; it should be torchvision's AlexNet; {LPIPS_HINT}")
            _load_into(self.net.net, {k: state[s] for k, s in wanted.items()}, "--lpips-weights", path,
                       "torchvision's AlexNet", LPIPS_HINT)
        self.net = self.net.to(device)
        self.device = device
        self.random = weights is None
        self.weights = f"alex {weights or 'random'} (linear layers: torchmetrics' LPIPS v0.1)"

    def __call__(self, preds: list[np.ndarray], gts: list[np.ndarray]) -> np.ndarray:
        """LPIPS of each pair of crops (each stretched to ``LPIPS_SIZE``)."""
        import torch

        def batch(images: list[np.ndarray]) -> torch.Tensor:
            resized = [np.asarray(Image.fromarray(i).resize((LPIPS_SIZE, LPIPS_SIZE), Image.BICUBIC)) for i in images]
            return torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float().div(255).to(self.device)

        with torch.inference_mode():
            return self.net(batch(preds), batch(gts), normalize=True).flatten().float().cpu().numpy()


def _inception_class() -> type:
    """torchmetrics' ``NoTrainInceptionV3`` (torch-fidelity's FID network) that can be built without weights.

    Its constructor takes weights only from the network or from a path it unpickles in full
    (``weights_only=False``, which can run code from the file); it is handed an empty state here, and
    :class:`InceptionFeatures` loads the weights itself from a file read with ``weights_only=True``."""
    from torchmetrics.image.fid import NoTrainInceptionV3

    class _Inception(NoTrainInceptionV3):
        def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False) -> Any:
            if not state_dict:  # the constructor's empty state: keep the seeded initialisation
                return super().load_state_dict(self.state_dict(), strict=True)
            return super().load_state_dict(state_dict, strict=strict, assign=assign)

    return _Inception


class InceptionFeatures:
    """The 2048-d pool features FID compares, from torch-fidelity's Inception-v3 (``weights`` by path)."""

    def __init__(self, weights: str | None, device: str) -> None:
        import torch

        from unieditkit.pipelines.models.random_init import seeded
        from unieditkit.pipelines.models.weights import load_state_dict

        empty = io.BytesIO()
        torch.save({}, empty)
        empty.seek(0)
        with seeded(0):
            self.net = _inception_class()(name="inception-v3-compat", features_list=["2048"],
                                          feature_extractor_weights_path=empty)
            if weights is None:
                # PyTorch's default init shrinks activations at each of Inception's ~95 layers, leaving ~1e-8
                # features and an FID of ~0 for any two sets; He init keeps random features apart
                for module in self.net.modules():
                    if isinstance(module, torch.nn.Conv2d):
                        torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if weights is not None:
            path = Path(weights)
            if not path.is_file():
                raise MissingModelError(f"--fid-weights {weights}: file not found; {FID_HINT}")
            _load_into(self.net, load_state_dict(path, "--fid-weights"), "--fid-weights", path,
                       "torch-fidelity's Inception-v3", FID_HINT)
        self.net = self.net.to(device)
        self.device = device
        self.random = weights is None
        self.weights = weights or "random"

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        """Features of same-sized uint8 crops (the network resizes them to 299 x 299 itself)."""
        import torch

        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().to(self.device)
        with torch.inference_mode():
            return self.net(batch).double().cpu().numpy()


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float | None:
    """torchmetrics' FID of two feature sets (``None`` below 2 samples, where a covariance is undefined).

    The features are first written in an orthonormal basis of the affine span they lie in (at most
    ``len(real) + len(fake)`` dimensions instead of 2048). Every term of the Fréchet distance — the squared
    mean difference, the covariance traces and ``Tr sqrt(S1 S2)`` — is unchanged by a translation and by an
    isometry of a subspace holding all the points, so the value is exactly the 2048-d one, while the
    eigenproblem torchmetrics solves shrinks from 2048 x 2048 (seconds) to n x n, which per-domain and
    per-subcategory rows need."""
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        return None
    origin = real.mean(axis=0)
    basis, _ = np.linalg.qr(np.concatenate([real, fake]).T - origin[:, None])

    class Features(torch.nn.Module):  # the features are computed once per crop, and projected per row here
        num_features = basis.shape[1]

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    fid = FrechetInceptionDistance(feature=Features())
    fid.update(torch.from_numpy((real - origin) @ basis), real=True)
    fid.update(torch.from_numpy((fake - origin) @ basis), real=False)
    return float(fid.compute())


def evaluate(pred: Path, data: Path, split: str, domain: str, embedders: dict, lpips: LpipsScorer | None = None,
             inception: InceptionFeatures | None = None, variants: tuple[str, ...] = tuple(MASK_VARIANTS)) -> dict:
    """Scores of the predictions and the baselines, per row (all samples, each domain, each subcategory) x mask
    variant x editor; ``embedders`` maps a reference metric's name (CLIP-I, DINO-I) to its embedder."""
    expected, missing = missing_predictions(pred, data, split, domain, variants)
    if missing:
        raise MissingPredictionsError(missing_line(expected, missing))
    editors = (MODEL, *BASELINES)
    scorers = {**embedders, **({"LPIPS": lpips} if lpips else {}), **({"FID": inception} if inception else {})}
    metrics = [m for m in HIGHER_IS_BETTER if m in scorers or m in ("PSNR", "SSIM")]
    records: list[dict[str, Any]] = []
    real: dict[str, list[np.ndarray]] = {v: [] for v in variants}
    fake: dict[tuple[str, str], list[np.ndarray]] = {(v, e): [] for v in variants for e in editors}
    n = 0
    for n, sample in enumerate(held_out(data, split, domain), 1):
        refs = {metric: embed([sample.ref])[0] for metric, embed in embedders.items()}
        for variant in variants:
            mask = sample.masks[variant]
            edits = {MODEL: composite(find_prediction(pred, sample.key, variant), sample, mask)}  # type: ignore[arg-type]
            edits.update((name, fill(sample.target, mask, sample.ref, sample.ref_mask)) for name, fill in BASELINES.items())
            scores: dict[str, dict[str, float]] = {
                e: {"PSNR": masked_psnr(x, sample.target, mask), "SSIM": masked_ssim(x, sample.target, mask)} for e, x in edits.items()
            }
            for metric, embed in embedders.items():
                for e, obj in zip(editors, embed([_crop(edits[e], sample.bbox) for e in editors])):
                    scores[e][metric] = float(obj @ refs[metric])
            box = mask_box(mask)
            crops = [_crop(edits[e], box) for e in editors]
            if lpips:
                for e, d in zip(editors, lpips(crops, [_crop(sample.target, box)] * len(editors))):
                    scores[e]["LPIPS"] = float(d)
            if inception:
                gt, *feats = inception([_crop(sample.target, box), *crops])
                real[variant].append(gt)
                for e, f in zip(editors, feats):
                    fake[(variant, e)].append(f)
            for e in editors:
                records.append({"sample": n - 1, "domain": sample.domain,
                                "subcategory": f"{sample.domain}/{sample.subcategory or '(none)'}",
                                "variant": variant, "editor": e, **scores[e]})
    groups = [("all", "", lambda r: True)]
    groups += [("domain", d, lambda r, d=d: r["domain"] == d) for d in sorted({r["domain"] for r in records})]
    groups += [("subcategory", s, lambda r, s=s: r["subcategory"] == s) for s in sorted({r["subcategory"] for r in records})]
    rows = []
    for kind, name, keep in groups:
        for variant in variants:
            for e in editors:
                sel = [r for r in records if r["variant"] == variant and r["editor"] == e and keep(r)]
                row: dict[str, Any] = {"group": kind, "name": name, "variant": variant, "editor": e, "n": len(sel)}
                for m in metrics:
                    row[m] = None if m == "FID" else float(np.mean([r[m] for r in sel]))
                if inception:
                    idx = [r["sample"] for r in sel]
                    row["FID"] = frechet_distance(np.stack([real[variant][i] for i in idx]), np.stack([fake[(variant, e)][i] for i in idx]))
                rows.append(row)
    return {
        "split": split, "samples": n, "variants": list(variants), "editors": list(editors), "metrics": metrics,
        "higher_is_better": {m: HIGHER_IS_BETTER[m] for m in metrics},
        "weights": {m: s.weights for m, s in scorers.items()},
        "random_weights": [m for m, s in scorers.items() if s.random],
        "evaluated": {v: n for v in variants},
        "rows": rows,
    }



def _cell(metric: str, value: float | None, n: int, random: bool) -> str:
    if value is None:
        text = "—"
    elif metric in ("CLIP-I", "DINO-I"):
        text = f"{100 * value:.2f}"
    elif metric in ("SSIM", "LPIPS"):
        text = f"{value:.4f}"
    else:
        text = f"{value:.2f}".replace("-0.00", "0.00")  # FID of identical sets comes out as -1e-9 or so
    return (text + "*" if random and value is not None else text) + (f" (n={n})" if metric == "FID" else "")


def format_table(result: dict) -> str:
    """Markdown table of all samples and of each domain (per-subcategory rows are in the JSON only, as there
    can be hundreds); metrics computed with random weights carry ``*`` in their header and every value."""
    metrics, flagged = result["metrics"], set(result["random_weights"])
    domains = [r["name"] for r in result["rows"] if r["group"] == "domain" and r["variant"] == result["variants"][0] and r["editor"] == MODEL]
    lines = []
    if flagged:
        lines.append(f"* RANDOM WEIGHTS for {', '.join(m for m in metrics if m in flagged)}: those scores are meaningless (plumbing test only)")
    head = [f"{m}{'*' if m in flagged else ''} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for m in metrics]
    lines += ["| mask | group | n | editor | " + " | ".join(head) + " |", "|---|---|---|---|" + "---|" * len(metrics)]
    for r in result["rows"]:
        if r["group"] == "subcategory" or (r["group"] == "domain" and len(domains) == 1):
            continue
        name = r["name"] if r["group"] == "domain" else ("all" if len(domains) != 1 else domains[0])
        cells = [_cell(m, r[m], r["n"], m in flagged) for m in metrics]
        lines.append(f"| {r['variant']} | {name} | {r['n']} | {r['editor']} | " + " | ".join(cells) + " |")
    lines.append(f"{result['samples']} {result['split']} samples; baselines: {', '.join(BASELINES)} (see `unieditkit eval --help`)")
    return "\n".join(lines)


def write_chart(result: dict, path: Path) -> None:
    """One bar panel per metric, bars per mask variant and editor, over all samples; random-weight panels say so
    in their title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics, variants, editors = result["metrics"], result["variants"], result["editors"]
    rows = {(r["variant"], r["editor"]): r for r in result["rows"] if r["group"] == "all"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.6), squeeze=False)
    width = 0.8 / len(editors)
    for ax, metric in zip(axes[0], metrics):
        for i, e in enumerate(editors):
            values = [rows[(v, e)][metric] for v in variants]
            ax.bar(np.arange(len(variants)) + (i - (len(editors) - 1) / 2) * width,
                   [np.nan if x is None else x for x in values], width, label=e)
        title = f"{metric} ({'higher' if HIGHER_IS_BETTER[metric] else 'lower'} is better)"
        if metric == "FID":
            title += f"\nn={result['samples']} per bar"
        if metric in result["random_weights"]:
            title += "\nRANDOM WEIGHTS: meaningless"
        ax.set_title(title, fontsize=9, color="red" if metric in result["random_weights"] else "black")
        ax.set_xticks(range(len(variants)), variants)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=len(editors), fontsize=9)
    fig.suptitle(f"unieditkit eval: {result['samples']} {result['split']} samples, mask variants x editors", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _variants(text: str) -> tuple[str, ...]:
    variants = tuple(v.strip() for v in text.split(",") if v.strip())
    if not variants or any(v not in MASK_VARIANTS for v in variants):
        raise UserError(f"--variants {text}: use a comma list of {', '.join(MASK_VARIANTS)}")
    return variants


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score an editor's outputs (CLIP-I, DINO-I, PSNR, SSIM, LPIPS, FID) beside two baselines, per mask variant",
                       description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--pred", required=True, help=f"folder of predictions KEY.VARIANT.png (VARIANT: {', '.join(MASK_VARIANTS)})")
    p.add_argument("--data", required=True, help="dataset folder written by `unieditkit build`")
    p.add_argument("--split", default="test", choices=SPLITS, help="the held-out split the predictions were made "
                   "for (`unieditkit build` prints the splits it wrote)")
    p.add_argument("--domain", default="", help="only this domain")
    p.add_argument("--variants", default=",".join(MASK_VARIANTS), help="mask variants the predictions were made with")
    p.add_argument("--clip-model", default="ViT-B-32", help="open_clip model for CLIP-I")
    p.add_argument("--clip-pretrained", default="laion2b_s34b_b79k", help="open_clip tag or weights file")
    p.add_argument("--no-clip", action="store_true", help="skip CLIP-I")
    p.add_argument("--dino-weights", default=None, metavar="FILE", help="DINOv2 ViT-S/14 weights file (timm layout)")
    p.add_argument("--no-dino", action="store_true", help="skip DINO-I")
    p.add_argument("--lpips-weights", default=None, metavar="FILE", help="torchvision AlexNet weights file (alexnet-owt-7be5be79.pth) for LPIPS")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    p.add_argument("--fid-weights", default=None, metavar="FILE", help="torch-fidelity Inception-v3 weights file (weights-inception-2015-12-05-6726825d.pth) for FID")
    p.add_argument("--no-fid", action="store_true", help="skip FID")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--json", default="", metavar="FILE", help="also write the result as JSON here")
    p.add_argument("--chart", default="", metavar="FILE.png", help="also draw the all-samples rows as a PNG bar chart here")
    p.add_argument("--random-weights", action="store_true",
                   help="PLUMBING TEST ONLY: random CLIP/DINO/LPIPS/Inception weights; those scores are meaningless and flagged")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_extra("eval", "scoring (CLIP-I, DINO-I, LPIPS, FID)")
    variants = _variants(args.variants)
    if not args.random_weights:
        needed = [(args.no_dino, args.dino_weights, "--dino-weights", "DINO-I needs DINOv2 weights", DINO_HINT),
                  (args.no_lpips, args.lpips_weights, "--lpips-weights", "LPIPS needs AlexNet weights", LPIPS_HINT),
                  (args.no_fid, args.fid_weights, "--fid-weights", "FID needs Inception-v3 weights", FID_HINT)]
        problems = [f"{what}: {hint}" if weights is None else f"{flag} {weights}: file not found; {hint}"
                    for skip, weights, flag, what, hint in needed if not skip and (weights is None or not Path(weights).is_file())]
        if problems:
            raise MissingModelError("; ".join(problems))
    for flag, out in (("--json", args.json), ("--chart", args.chart)):
        if out and not Path(out).resolve().parent.is_dir():
            raise UserError(f"{flag} {out}: its folder does not exist; create it or pick another path")
    expected, missing = missing_predictions(Path(args.pred), Path(args.data), args.split, args.domain, variants)
    if missing:
        print(f"unieditkit eval: {missing_line(expected, missing)}", file=sys.stderr)
        return 1
    from unieditkit.pipelines.models.device import resolve_device

    device = str(resolve_device(args.device))

    def weights(given: str | None) -> str | None:
        return None if args.random_weights else given

    embedders: dict = {}
    if not args.no_clip:
        embedders["CLIP-I"] = ClipEmbedder(args.clip_model, weights(args.clip_pretrained), device)
    if not args.no_dino:
        embedders["DINO-I"] = DinoEmbedder(weights(args.dino_weights), device)
    lpips = None if args.no_lpips else LpipsScorer(weights(args.lpips_weights), device)
    inception = None if args.no_fid else InceptionFeatures(weights(args.fid_weights), device)
    result = evaluate(Path(args.pred), Path(args.data), args.split, args.domain, embedders, lpips, inception, variants)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.chart:
        write_chart(result, Path(args.chart))
    return 0
