"""``unieditkit edit``: put the reference object into the masked region of a target image with a trained run.

Single image::

    unieditkit edit --checkpoint RUN_DIR [--step latest] --ref REF.jpg --image TGT.jpg --mask MASK.png
                    [--category KEY] --out OUT.png

Batch, for ``unieditkit eval``::

    unieditkit edit --checkpoint RUN_DIR --data OUT_DIR --split test --variants fine,rough,box --out PRED_DIR

writes ``PRED_DIR/{key}.{variant}.png`` for every sample of the split, the layout ``unieditkit eval --pred`` reads.

Both backbones (the run's ``config.yaml`` says which). Inputs are prepared exactly as in training (letterboxed to
``model.image_size``; the mask marks every pixel the object touches); the edit is mapped back to the target's
own size and only the masked pixels are taken from it: every known pixel outside the mask is the input's. The
single form's noise is seeded by ``--seed`` alone, so the same inputs and seed give the same image whatever the
output is called; the seed, step and checkpoint are recorded in the PNG's ``unieditkit`` text chunk. In the batch
form each output's noise is seeded by ``--seed``, the sample key and the variant, so it does not depend on the
batch it was computed in (on the CPU the images are identical at any ``--batch-size``, tested; GPU kernels may
round differently at another batch size). Both forms take the CPU thread budget ``unieditkit train`` takes.

On a 24 GB GPU (flux-fill): ``--backbone-quant int8`` (or the run's own ``model.backbone_quant``) loads the frozen
transformer quantized, and every prompt of the edit is encoded first and T5 and CLIP released before the first
sampling step (``_encode_prompts``), so sampling holds the transformer, the experts and the VAE only.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import pathlib
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from unieditkit.training.config import BACKBONE_QUANTS
from unieditkit.errors import UserError
from unieditkit.extras import require_extra
from unieditkit.format import MASK_VARIANTS, SPLITS, TAR_SUFFIX, TARGET_IMAGE, marker_name, mask_member


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "edit", help="edit images with a trained run (one image, or a whole split for `unieditkit eval`)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="run folder written by `unieditkit train`")
    p.add_argument("--step", default="latest", help="'latest' or a step number of RUN_DIR/checkpoints")
    p.add_argument("--out", required=True, help="output image (single form) or folder of predictions (batch form)")
    p.add_argument("--ref", help="reference object image (single form)")
    p.add_argument("--image", help="target image to edit (single form)")
    p.add_argument("--mask", help="edit region, white = replace (single form; same size as --image)")
    p.add_argument("--category", help="subcategory key or name (`unieditkit taxonomy`); default: the run's "
                                      "only domain")
    p.add_argument("--prompt", default="", help="flux-fill: a caption of the reference object, which is what "
                                                "training gave a sample whose build stored captions (default: "
                                                "model.prompt_template with the category's name, as training gave "
                                                "a sample without one)")
    p.add_argument("--data", help="dataset folder written by `unieditkit build` (batch form)")
    p.add_argument("--split", default="test", choices=SPLITS,
                   help="batch form: the split to edit (`unieditkit build` prints the splits it wrote)")
    p.add_argument("--domain", default="", help="batch form: only this domain")
    p.add_argument("--variants", default=",".join(MASK_VARIANTS), help="mask variants to edit with (batch form)")
    p.add_argument("--batch-size", type=int, default=4, help="batch form: samples edited together")
    p.add_argument("--steps", type=int, default=28, help="sampling steps")
    p.add_argument("--seed", type=int, default=0, help="noise seed (the batch form mixes in each sample's key and "
                                                       "variant); recorded in the single form's PNG")
    p.add_argument("--pretrained", help="FLUX.1-Fill snapshot, if it moved since training (flux-fill runs)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:N")
    p.add_argument("--backbone-quant", choices=tuple(BACKBONE_QUANTS),
                   help="flux-fill: load the frozen backbone this way instead of as the run trained (its "
                        "model.backbone_quant); int8 or nf4 edits on a 24 GB GPU")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    require_extra("train", "editing with a trained checkpoint")
    single = [args.ref, args.image, args.mask]
    if args.data and any(single):
        raise UserError("pass either --data (batch form) or --ref/--image/--mask (single form), not both")
    if not args.data and not all(single):
        raise UserError("single form needs --ref, --image and --mask (or pass --data OUT_DIR for the batch form)")
    if args.steps < 1 or args.batch_size < 1:
        raise UserError("--steps and --batch-size must be at least 1")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in MASK_VARIANTS]
    if bad or not variants:
        raise UserError(f"--variants {args.variants}: use a comma list of {', '.join(MASK_VARIANTS)}")
    if args.data:
        _samples(pathlib.Path(args.data), args.split, args.domain)  # a split the folder lacks: said before loading
    run = load_run(pathlib.Path(args.checkpoint), args.step, args.device, args.pretrained, args.backbone_quant)
    if run.device.type == "cpu":
        from unieditkit.training.train import set_threads

        print(f"edit: note: {set_threads(0)}", file=sys.stderr)
    if args.data:
        n = edit_split(run, pathlib.Path(args.data), args.split, args.domain, variants, pathlib.Path(args.out),
                       args.batch_size, args.steps, args.seed)
        print(f"wrote {n} predictions to {args.out}")
    else:
        edit_one(run, args, pathlib.Path(args.out))
        print(f"wrote {args.out} (seed {args.seed}, checkpoint step {run.step}, {args.steps} sampling steps)")
    return 0


@dataclass
class LoadedRun:
    """A run's config and its backend with the checkpoint's trained weights."""

    cfg: Any
    backend: Any
    step: int
    device: Any
    run_dir: pathlib.Path
    prompt_cache: Any = None  # flux-fill without data.cache: the folder the edit's prompts are encoded into


def load_run(run_dir: pathlib.Path, step: str, device: str, pretrained: str | None = None,
             backbone_quant: str | None = None) -> LoadedRun:
    import torch

    from unieditkit.training.backbones.base import make_backend
    from unieditkit.training.runtime.checkpoint import checkpoint_dir, find_checkpoint, load_weights
    from unieditkit.training.config import load_config

    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"--checkpoint {run_dir}: no config.yaml; pass a run folder written by `unieditkit train`")
    if step == "latest":
        path = find_checkpoint(run_dir, "latest")
        if path is None:
            raise UserError(f"--checkpoint {run_dir}: has no checkpoint yet; train it first (or pass --step N)")
    elif step.isdigit():
        path = checkpoint_dir(run_dir) / f"step_{int(step):08d}.pt"
        if not path.is_file():
            raise UserError(f"--step {step}: {path} not found; pass 'latest' or a step that was saved")
    else:
        raise UserError(f"--step {step}: use 'latest' or a step number")
    overrides = {"model.pretrained": pretrained} if pretrained else {}
    trained = load_config(run_dir / "config.yaml", overrides).model.backbone_quant
    if backbone_quant and backbone_quant != trained:
        overrides["model.backbone_quant"] = backbone_quant
        print(f"edit: note: --backbone-quant {backbone_quant}: the backbone loads as {backbone_quant}, the run trained "
              f"with model.backbone_quant {trained}", file=sys.stderr)
    cfg = load_config(run_dir / "config.yaml", overrides)
    prompt_cache = None
    if cfg.model.backbone == "flux-fill" and not cfg.data.cache:
        prompt_cache = tempfile.TemporaryDirectory(prefix="unieditkit-edit-")
        cfg.data.cache = prompt_cache.name
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    backend = make_backend(cfg, dev)
    loaded_step = load_weights(path, backend.module)
    backend.module.eval()
    return LoadedRun(cfg, backend, loaded_step, dev, run_dir, prompt_cache)


def _encode_prompts(run: LoadedRun, prompts: list[str]) -> None:
    """flux-fill: every prompt of the edit through CLIP and T5 once, into the run's cache (``data.cache``, else a
    temporary folder ``load_run`` made), then both are released (~10 GB in bf16), so no sampling step holds them."""
    if run.cfg.model.backbone == "flux-fill":
        run.backend.inputs.cache_prompts(prompts)


def sample_seed(seed: int, key: str, variant: str) -> int:
    """Per output, independent of batching and process: a hash, not Python's salted ``hash``."""
    digest = hashlib.sha256(f"{seed}|{key}|{variant}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _generate(run: LoadedRun, items: list[dict], seeds: list[int], steps: int, progress: bool = False) -> np.ndarray:
    """Edited targets as (B, R, R, 3) uint8 at the training size. ``progress`` counts sampling steps on a
    terminal (each step is one forward of the model, for either backbone) and says nothing when stderr is not
    one."""
    import torch
    from tqdm import tqdm

    from unieditkit.training.data import collate
    from unieditkit.training.runtime.runlog import to_uint8

    batch = collate(items)
    batch = {k: v.to(run.device) if torch.is_tensor(v) else v for k, v in batch.items()}
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    with tqdm(total=steps, desc="edit", unit="step", disable=not (progress and sys.stderr.isatty())) as bar:
        def count(*_: Any) -> None:  # a forward hook that returned a value would replace the model's output
            bar.update(1)

        hook = run.backend.module.register_forward_hook(count)
        try:
            pred = run.backend.sample(batch, steps, gens)
        finally:
            hook.remove()
    return np.stack([to_uint8(p) for p in pred])


def unletterbox(pred: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Undo ``data.letterbox``: crop the padding, resize to the image's own ``(w, h)``."""
    r = pred.shape[0]
    w, h = size
    scale = r / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    x0, y0 = (r - nw) // 2, (r - nh) // 2
    return Image.fromarray(pred[y0:y0 + nh, x0:x0 + nw]).resize((w, h), Image.BICUBIC)


def compose(pred: np.ndarray, target: Image.Image, mask: Image.Image) -> Image.Image:
    """The edit inside the mask at the target's full resolution; the target's own pixels everywhere else."""
    edited = np.asarray(unletterbox(pred, target.size))
    keep = (np.asarray(mask.convert("L")) > 127)[..., None]
    return Image.fromarray(np.where(keep, edited, np.asarray(target.convert("RGB"))))


def _category(run: LoadedRun, key: str | None) -> tuple[int, int, str]:
    """(domain index, subcategory id, display name) for ``--category``; without it, what the run trained on
    (``trained_on.json``): its only subcategory, else its only domain with the subcategory unknown (the router
    then uses the domain's anchor alone). Several domains leave the anchor undecidable, so the user must say."""
    from unieditkit.taxonomy import load_taxonomy
    from unieditkit.training.data import TRAINED_ON, read_trained_on

    anchors = run.backend.anchors
    tax = load_taxonomy(run.cfg.model.taxonomy or None)
    if key:
        sub = tax.lookup(key)
        if sub is None:
            try:
                sub = tax.by_key(key)
            except Exception:  # noqa: BLE001 - any lookup failure is the same user mistake
                raise UserError(f"--category {key}: not in the taxonomy; `unieditkit taxonomy` lists the keys") from None
        return anchors.domain_index(sub.domain), sub.id, sub.name
    record = read_trained_on(run.run_dir)
    domains = record["domains"] if record else list(run.cfg.data.domains)
    subs = record["subcategories"] if record else []
    if len(subs) == 1:
        sub = tax.by_id(int(subs[0]["id"]))
        print(f"edit: no --category; using the run's only subcategory, {sub.key}", file=sys.stderr)
        return anchors.domain_index(sub.domain), sub.id, sub.name
    if len(domains) == 1:
        print(f"edit: no --category; using the run's only domain, {domains[0]} (pass --category KEY for the "
              "object's own subcategory experts)", file=sys.stderr)
        return anchors.domain_index(domains[0]), -1, tax.domain(domains[0]).name
    if not domains:
        raise UserError(f"--category KEY is needed: {run.run_dir} has no {TRAINED_ON} (trained before runs recorded "
                        "their domains), so the router's anchor is unknown (`unieditkit taxonomy` lists the keys)")
    raise UserError(f"--category KEY is needed: the run trained on {len(domains)} domains ({', '.join(domains)}), so "
                    "the router needs the object's subcategory (`unieditkit taxonomy` lists them)")


def _open(path: str, what: str) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except (OSError, ValueError) as err:
        raise UserError(f"--{what} {path}: not a readable image ({type(err).__name__})") from None


def edit_one(run: LoadedRun, args: argparse.Namespace, out: pathlib.Path) -> None:
    import torch

    from unieditkit.training.data import GREY, _to_tensor, letterbox

    ref, tgt, mask = _open(args.ref, "ref").convert("RGB"), _open(args.image, "image").convert("RGB"), \
        _open(args.mask, "mask").convert("L")
    if mask.size != tgt.size:
        raise UserError(f"--mask {args.mask}: {mask.size[0]}x{mask.size[1]} but --image is "
                        f"{tgt.size[0]}x{tgt.size[1]}; give a mask of the target's size")
    domain, sub, name = _category(run, args.category)
    if run.cfg.model.backbone == "flux-fill" and not args.prompt:
        print(f"edit: prompt '{run.cfg.model.prompt_template.format(name=name)}' (model.prompt_template; --prompt "
              "gives a caption of the reference instead)", file=sys.stderr)
    _encode_prompts(run, [args.prompt or run.cfg.model.prompt_template.format(name=name)])
    size = run.cfg.model.image_size
    small_mask = letterbox(mask, size, 0, Image.BOX)
    item = {
        "ref": _to_tensor(letterbox(ref, size, GREY, Image.BICUBIC)),
        "tgt": _to_tensor(letterbox(tgt, size, GREY, Image.BICUBIC)),
        "mask": torch.from_numpy((np.asarray(small_mask) > 0).astype(np.float32))[None],
        "domain": domain, "subcategory": sub, "variant": 0, "key": out.stem, "caption": args.prompt, "name": name,
    }
    pred = _generate(run, [item], [args.seed], args.steps, progress=True)[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    record = PngInfo()
    record.add_text("unieditkit", json.dumps({"checkpoint": str(run.run_dir), "step": run.step, "seed": args.seed,
                                              "steps": args.steps, "category": args.category or ""}))
    compose(pred, tgt, mask).save(out, pnginfo=record)


def _samples(data: pathlib.Path, split: str, domain: str) -> tuple[list[str], int]:
    from unieditkit.training.data import find_shards

    tars = find_shards(data, split, [domain] if domain else [])
    total = 0
    for tar in tars:
        stats = pathlib.Path(marker_name(tar[: -len(TAR_SUFFIX)]))
        total += int(json.loads(stats.read_text(encoding="utf-8")).get("samples", 0))
    return tars, total


def edit_split(run: LoadedRun, data: pathlib.Path, split: str, domain: str, variants: list[str],
               out: pathlib.Path, batch_size: int, steps: int, seed: int) -> int:
    """Every sample x variant of the split; returns how many predictions were written."""
    import webdataset as wds
    from tqdm import tqdm

    from unieditkit.training.data import decode_sample

    tars, total = _samples(data, split, domain)
    if run.cfg.model.backbone == "flux-fill":
        from unieditkit.training.backbones.flux.inputs import shard_prompts

        _encode_prompts(run, shard_prompts(tars, run.cfg.model.prompt_template))
    out.mkdir(parents=True, exist_ok=True)
    pending: list[tuple[dict, dict, str]] = []
    skipped: list[str] = []
    written = 0
    with tqdm(total=total * len(variants), desc="edit", unit="img", dynamic_ncols=True) as bar:
        def flush() -> int:
            items = [p[1] for p in pending]
            seeds = [sample_seed(seed, p[0]["__key__"], p[2]) for p in pending]
            preds = _generate(run, items, seeds, steps)
            for (sample, _, variant), pred in zip(pending, preds):
                target = Image.open(io.BytesIO(sample[TARGET_IMAGE])).convert("RGB")
                mask = Image.open(io.BytesIO(sample[mask_member(variant)])).convert("L")
                if target.size != mask.size:
                    target = target.resize(mask.size, Image.BICUBIC)
                compose(pred, target, mask).save(out / f"{sample['__key__']}.{variant}.png")
            bar.update(len(pending))
            n = len(pending)
            pending.clear()
            return n

        for sample in wds.WebDataset(tars, shardshuffle=False, empty_check=False):
            for variant in variants:
                try:
                    item = decode_sample(sample, variant, run.cfg.model.image_size, run.backend.anchors)
                except Exception as err:  # noqa: BLE001 - an unreadable sample is reported, not fatal
                    skipped.append(f"{sample.get('__key__', '?')}.{variant}: {type(err).__name__}")
                    bar.update(1)
                    continue
                pending.append((sample, item, variant))
                if len(pending) == batch_size:
                    written += flush()
        if pending:
            written += flush()
    if skipped:
        print(f"skipped {len(skipped)} unreadable sample(s) (first: {skipped[0]}); `unieditkit eval` counts them "
              "as missing", file=sys.stderr)
    return written
