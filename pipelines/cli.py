"""``unieditkit build``: the dataset build command."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from unieditkit.errors import UserError

from .build import build
from .sources.config import load_sources_yaml
from .config import BuildConfig, ModelStagesConfig, OutputSettings, load_stage_resources

if TYPE_CHECKING:
    from .models.weights import ModelSpec


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not three comma-separated numbers, e.g. 0.9,0.05,0.05") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"'{text}': need train,val,test ratios, e.g. 0.9,0.05,0.05")
    return values  # type: ignore[return-value]


def register(sub: argparse._SubParsersAction) -> None:
    d = OutputSettings()
    p = sub.add_parser(
        "build",
        help="build WebDataset shards of (reference, target) pairs for one taxonomy domain",
        description="Build shards for one domain. With no --source, the sample bundled with unieditkit is used. "
        "Re-running the same command resumes: done shards are kept, missing ones are (re)built.",
    )
    p.add_argument("--domain", required=True, help="taxonomy domain key, e.g. garments (see `unieditkit taxonomy`)")
    p.add_argument("--out", default="out", help="output folder (default: ./out)")
    p.add_argument("--source", action="append", default=[], metavar="KIND:PATH[?opt=v]", help="input, repeatable: coco:, manifest:, images:, video:, multiview:, tryon:, hf: (see README)")
    p.add_argument("--sources-file", default="", metavar="FILE.yaml", help="sources listed in a YAML file (sources: [{kind: video, path: clips/, pairs_per_video: 2}, ...])")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for augmentations and MATS masks (default: %(default)s)")
    p.add_argument("--splits", type=_ratios, default=d.split_ratios, metavar="TRAIN,VAL,TEST", help="split ratios (default: 0.9,0.05,0.05)")
    p.add_argument("--units-per-shard", type=int, default=d.units_per_shard, help="input units (images/pairs) per shard (default: %(default)s)")
    p.add_argument("--max-side", type=int, default=d.max_side, help="longest side of target images (default: %(default)s)")
    p.add_argument("--ref-size", type=int, default=d.ref_size, help="side of the square reference image (default: %(default)s)")
    p.add_argument("--no-augment", action="store_true", help="do not augment references of self pairs")
    p.add_argument("--taxonomy", default="", help="a taxonomy YAML file instead of the bundled one")
    p.add_argument("--ray-address", default="", help="an existing Ray cluster (default: start a local Ray instance)")
    p.add_argument("--workers", type=int, default=0, help="CPUs for the local Ray instance (default: all)")
    p.add_argument("--batch-size", type=int, default=16, help="units per Ray Data batch (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--config", default="", metavar="FILE.yaml", help="YAML with per-stage resources (batch_size, concurrency, num_gpus, num_cpus under stages.NAME) and thresholds")

    m = p.add_argument_group("model stages (mining unannotated input)")
    m.add_argument("--models", default="auto", help="model stages to run: auto (what the input needs), none, or a list of detect,segment,caption,categorize")
    m.add_argument("--models-dir", default=None, help="folder with checkpoints under their official names (default: $UNIEDITKIT_MODELS)")
    m.add_argument("--segmenter", default="auto", choices=("auto", "sam", "grabcut"), help="auto: SAM when a checkpoint is found, else GrabCut")
    m.add_argument("--sam-model", default="vit_b", help="SAM model type (vit_b, vit_l, vit_h)")
    m.add_argument("--sam-checkpoint", default=None, help="SAM checkpoint path, e.g. sam_vit_b_01ec64.pth")
    m.add_argument("--dino-config", default=None, help="GroundingDINO config .py (default: SwinT-OGC shipped with groundingdino-py)")
    m.add_argument("--dino-checkpoint", default=None, help="GroundingDINO checkpoint, e.g. groundingdino_swint_ogc.pth")
    m.add_argument("--dino-text-encoder", default="bert-base-uncased", help="BERT folder or hub name for GroundingDINO's text encoder")
    m.add_argument("--caption-model", default="coca_ViT-B-32", help="open_clip CoCa model name")
    m.add_argument("--caption-pretrained", default="mscoco_finetuned_laion2b_s13b_b90k", help="open_clip pretrained tag or checkpoint path")
    m.add_argument("--clip-model", default="ViT-B-32", help="open_clip model for zero-shot categorization")
    m.add_argument("--clip-pretrained", default="laion2b_s34b_b79k", help="open_clip pretrained tag or checkpoint path")
    m.add_argument("--box-threshold", type=float, default=0.35, help="GroundingDINO box threshold")
    m.add_argument("--text-threshold", type=float, default=0.25, help="GroundingDINO text threshold")
    m.add_argument("--min-category-score", type=float, default=d.min_category_score, help="reject mined samples whose CLIP label scores below this")
    m.add_argument("--min-detector-score", type=float, default=d.min_detector_score, help="reject mined samples whose detection scores below this")
    m.add_argument("--random-weights", action="store_true", help="PLUMBING TEST ONLY: random model weights, tiny configs; the output is noise")
    p.set_defaults(func=run)


def model_spec(args: argparse.Namespace) -> "ModelSpec":
    from .models.weights import ModelSpec

    return ModelSpec(
        models_dir=args.models_dir,
        segmenter=args.segmenter,
        sam_model_type=args.sam_model,
        sam_checkpoint=args.sam_checkpoint,
        dino_config=args.dino_config,
        dino_checkpoint=args.dino_checkpoint,
        dino_text_encoder=args.dino_text_encoder,
        caption_model=args.caption_model,
        caption_pretrained=args.caption_pretrained,
        clip_model=args.clip_model,
        clip_pretrained=args.clip_pretrained,
        random_init=args.random_weights,
    )


def model_stages(args: argparse.Namespace) -> ModelStagesConfig:
    stages: str | tuple[str, ...] = args.models
    if args.models == "none":
        stages = ()
    elif args.models != "auto":
        stages = tuple(x.strip() for x in args.models.split(",") if x.strip())
    resources = load_stage_resources(args.config) if args.config else {}
    return ModelStagesConfig(stages=stages, resources=resources, box_threshold=args.box_threshold, text_threshold=args.text_threshold)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    settings = OutputSettings(
        min_category_score=args.min_category_score,
        min_detector_score=args.min_detector_score,
        seed=args.seed,
        split_ratios=args.splits,
        units_per_shard=args.units_per_shard,
        max_side=args.max_side,
        ref_size=args.ref_size,
        augment_self_pairs=not args.no_augment,
    )
    config = BuildConfig(
        domain=args.domain,
        out_dir=args.out,
        sources=tuple(args.source) + (tuple(load_sources_yaml(args.sources_file)) if args.sources_file else ()),
        settings=settings,
        ray_address=args.ray_address,
        num_workers=args.workers,
        batch_size=args.batch_size,
        taxonomy_path=args.taxonomy,
        progress=not args.no_progress,
        models=model_spec(args),
        model_stages=model_stages(args),
    )
    for line in build(config).lines():
        print(line)
    return 0
