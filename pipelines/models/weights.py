"""Where each model's weights come from, and one check that names every missing file before a build starts.

A mining build runs for hours on many workers; finding out on the first batch of the third stage that a
checkpoint is missing wastes all the work before it, and fixing missing files one error at a time wastes the
user's. So ``check_weights`` looks for everything the configured backends need (files on disk, entries in the
Hugging Face cache) without loading any model, and returns one line per missing item with the command or URL
that gets it. Nothing here waits on the network: when the hub is unreachable or ``HF_HUB_OFFLINE`` is set,
only the local cache is consulted.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlparse

from unieditkit.errors import MissingModelError, UserError

from ..stages.model_stages import MODEL_STAGES, resolve

if TYPE_CHECKING:
    import torch

MODELS_DIR_ENV = "UNIEDITKIT_MODELS"

#: official SAM checkpoints: model type -> (file name, download URL)
SAM_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "vit_b": ("sam_vit_b_01ec64.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"),
    "vit_l": ("sam_vit_l_0b3195.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth"),
    "vit_h": ("sam_vit_h_4b8939.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"),
    "vit_t": ("mobile_sam.pt", "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"),
}
_SAM2_RELEASES = "https://dl.fbaipublicfiles.com/segment_anything_2"
#: SAM 2 config names shipped in the ``sam2`` package -> (official checkpoint name, download URL)
SAM2_CHECKPOINTS: dict[str, tuple[str, str]] = {
    **{f"sam2.1_hiera_{c}": (f"sam2.1_hiera_{n}.pt", f"{_SAM2_RELEASES}/092824/sam2.1_hiera_{n}.pt")
       for c, n in (("t", "tiny"), ("s", "small"), ("b+", "base_plus"), ("l", "large"))},
    **{f"sam2_hiera_{c}": (f"sam2_hiera_{n}.pt", f"{_SAM2_RELEASES}/072824/sam2_hiera_{n}.pt")
       for c, n in (("t", "tiny"), ("s", "small"), ("b+", "base_plus"), ("l", "large"))},
}
SEGMENTERS = ("auto", "sam", "sam2", "grabcut")

_DINO_RELEASES = "https://github.com/IDEA-Research/GroundingDINO/releases/download"
#: GroundingDINO configs shipped in the groundingdino-py package -> (official checkpoint name, URL)
DINO_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "GroundingDINO_SwinT_OGC.py": (
        "groundingdino_swint_ogc.pth",
        f"{_DINO_RELEASES}/v0.1.0-alpha/groundingdino_swint_ogc.pth",
    ),
    "GroundingDINO_SwinB_cfg.py": (
        "groundingdino_swinb_cogcoor.pth",
        f"{_DINO_RELEASES}/v0.1.0-alpha2/groundingdino_swinb_cogcoor.pth",
    ),
}
DEFAULT_DINO_CONFIG = "GroundingDINO_SwinT_OGC.py"

#: files of a BERT-style text encoder folder; weights in either format
_TEXT_ENCODER_PATTERNS = ["*.json", "vocab.txt", "model.safetensors"]
#: file names open_clip weights go by on the hub, safetensors first
_OPEN_CLIP_FILES = ["open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin"]
_HUB_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ModelSpec:
    """Which backends a build uses and where their weights are; picklable, so Ray stages can rebuild models.

    Paths left ``None`` are looked up in ``models_dir`` (``$UNIEDITKIT_MODELS``) under the official file names.
    ``random_init`` builds every backend with random weights and small configs, downloading nothing: for
    tests and dry runs of the pipeline plumbing, never for data (its outputs are noise).
    """

    models_dir: str | None = None
    segmenter: str = "auto"
    sam_model_type: str = "vit_b"
    sam_checkpoint: str | None = None
    sam2_config: str = "sam2.1_hiera_t"
    sam2_checkpoint: str | None = None
    dino_config: str | None = None
    dino_checkpoint: str | None = None
    dino_text_encoder: str = "bert-base-uncased"
    caption_model: str = "coca_ViT-B-32"
    caption_pretrained: str | None = "mscoco_finetuned_laion2b_s13b_b90k"
    clip_model: str = "ViT-B-32"
    clip_pretrained: str | None = "laion2b_s34b_b79k"
    stages: tuple[str, ...] = field(default_factory=lambda: tuple(MODEL_STAGES))
    random_init: bool = False

    def __post_init__(self) -> None:
        if self.segmenter not in SEGMENTERS:
            raise UserError(f"--segmenter {self.segmenter}: unknown; choose one of {', '.join(SEGMENTERS)}")
        if self.sam_model_type not in SAM_CHECKPOINTS:
            raise UserError(f"--sam-model {self.sam_model_type}: unknown; choose one of {', '.join(SAM_CHECKPOINTS)}")
        if self.sam2_config not in SAM2_CHECKPOINTS:
            raise UserError(f"--sam2-config {self.sam2_config}: unknown; choose one of {', '.join(SAM2_CHECKPOINTS)}")
        unknown = sorted(set(self.stages) - set(MODEL_STAGES))
        if unknown:
            raise UserError(f"model stages {unknown}: unknown; use {', '.join(MODEL_STAGES)}")

    def models_path(self) -> Path | None:
        """The folder searched for checkpoints given without a path."""
        folder = self.models_dir or os.environ.get(MODELS_DIR_ENV)
        return Path(folder).expanduser() if folder else None


# ---------------------------------------------------------------------------------------------------------------
# network


def hub_online() -> bool:
    """Whether the Hugging Face hub may be contacted: not when ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is
    set, nor when its host does not answer within a few seconds (the hub client would otherwise retry for about
    a minute per file before failing)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return False
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    return _endpoint_reachable(constants.ENDPOINT)


@functools.lru_cache(maxsize=None)
def _endpoint_reachable(endpoint: str) -> bool:
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((url.hostname, port), timeout=_HUB_PROBE_TIMEOUT_S).close()
            result.append(True)
        except OSError:
            result.append(False)

    # a thread bounds the DNS lookup too, which the socket timeout does not cover
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(_HUB_PROBE_TIMEOUT_S + 0.5)
    return bool(result and result[0])


# ---------------------------------------------------------------------------------------------------------------
# checkpoints on disk


def load_state_dict(path: str | Path, flag: str) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, loaded with ``weights_only=True`` so a file cannot run code; a training
    checkpoint that wraps the weights under ``"model"`` (GroundingDINO's) is unwrapped."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise MissingModelError(f"{flag} {path}: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same actionable message
        raise UserError(
            f"{flag} {path}: cannot be read as a plain weights checkpoint ({type(err).__name__}); "
            "download the official file again, or re-save only its tensors with torch.save(state_dict, path)"
        ) from err
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{flag} {path}: holds no state dict of tensors; pass the model's weights file")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


#: keys an official checkpoint may carry beyond the model we build (unexpected) or lack (missing), per model.
#: GroundingDINO's releases hold ``label_enc.weight`` (a denoising-training embedding the inference model does
#: not build) and BERT's ``position_ids`` (a buffer transformers >= 4.31 no longer saves); nothing else may
#: differ, and SAM / SAM 2 checkpoints must match exactly.
CHECKPOINT_ALLOWED: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "groundingdino": (frozenset({"label_enc.weight", "bert.embeddings.position_ids"}), frozenset()),
    "sam": (frozenset(), frozenset()),
    "sam2": (frozenset(), frozenset()),
}


def load_checked(model: "torch.nn.Module", state: dict[str, "torch.Tensor"], kind: str, flag: str, path: str | Path) -> None:
    """Load ``state`` into ``model``, refusing any missing, unexpected or mis-shaped key beyond the documented
    allow-list of ``kind`` (``CHECKPOINT_ALLOWED``): a half-loaded detector or segmenter still runs and makes
    plausible-looking boxes and masks, so a damaged or foreign file must stop the build instead."""
    unexpected_ok, missing_ok = CHECKPOINT_ALLOWED[kind]
    own = model.state_dict()
    missing = sorted(set(own) - set(state) - missing_ok)
    unexpected = sorted(set(state) - set(own) - unexpected_ok)
    reshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        parts = [f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})" for what, keys in
                 (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)) if keys]
        raise UserError(f"{flag} {path}: does not fit the model: keys {'; '.join(parts)}; "
                        "download the official file again or pass the config/model type it was made for")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def _in_models_dir(spec: ModelSpec, name: str) -> Path | None:
    folder = spec.models_path()
    if folder is None:
        return None
    candidate = folder / name
    return candidate if candidate.is_file() else None


def _where(spec: ModelSpec, url: str) -> str:
    """How to place an official checkpoint so it is found without a path flag."""
    folder = spec.models_path()
    if folder:
        return f"not in the models folder {folder}; download {url} into it"
    return f"no path given and ${MODELS_DIR_ENV} is not set; download {url} into a folder and set ${MODELS_DIR_ENV} to it"


def official_file(spec: ModelSpec, what: str, name: str, url: str, otherwise: str = "") -> Path:
    """The weights file ``name`` in the models folder, or one line naming it, the ``url`` it comes from, where to
    put it and (``otherwise``) the flags that do without it: the check and the load of a stage both call this, so
    what the check passes is what the stage loads."""
    found = _in_models_dir(spec, name)
    if found is None:
        raise MissingModelError(f"{what} {name}: {_where(spec, url)}" + (f", {otherwise}" if otherwise else ""))
    return found


def segmenter_choice(spec: ModelSpec) -> str:
    """``"sam"``, ``"sam2"`` or ``"grabcut"``: with ``segmenter="auto"``, SAM when its checkpoint is configured or
    found in the models folder, else SAM 2 likewise, else the classical GrabCut fallback (announced by
    ``fallback_note``)."""
    if spec.segmenter != "auto":
        return spec.segmenter
    if spec.random_init or spec.sam_checkpoint or _in_models_dir(spec, SAM_CHECKPOINTS[spec.sam_model_type][0]):
        return "sam"
    if spec.sam2_checkpoint or _in_models_dir(spec, SAM2_CHECKPOINTS[spec.sam2_config][0]):
        return "sam2"
    return "grabcut"


def fallback_note(spec: ModelSpec) -> str:
    """One line when the segment stage runs with GrabCut only because no SAM checkpoint was found ("" otherwise):
    GrabCut separates colours, not objects, and a user who meant to run SAM must learn it before the build."""
    if "segment" not in spec.stages or spec.segmenter != "auto" or segmenter_choice(spec) != "grabcut":
        return ""
    name, url = SAM_CHECKPOINTS[spec.sam_model_type]
    return (f"segmentation falls back to GrabCut (mask_source: grabcut): no SAM checkpoint {name} ({_where(spec, url)}, "
            "or pass --sam-checkpoint FILE); pass --segmenter grabcut to choose GrabCut explicitly")


def tracker_choice(spec: ModelSpec | None) -> str:
    """``"sam2"`` or ``"template"``: what follows the objects of a mined video pair from one frame to the other
    (``pipelines/stages/track.py``). SAM 2's video predictor when the build mines (detection runs), the sam2
    package is installed and a SAM 2 checkpoint is configured or in the models folder; never with random weights,
    whose tracks would distrust every pair and leave nothing of the plumbing such a build exercises."""
    import importlib.util

    if spec is None or spec.random_init or "detect" not in spec.stages or importlib.util.find_spec("sam2") is None:
        return "template"
    return "sam2" if spec.sam2_checkpoint or _in_models_dir(spec, SAM2_CHECKPOINTS[spec.sam2_config][0]) else "template"


def tracker_note(spec: ModelSpec | None) -> str:
    """One line naming the tracker of mined video pairs ("" when nothing is mined): the template tracker loses
    hidden objects that SAM 2 would keep, so its pairs are rejected as ``ambiguous_identity`` more often."""
    if spec is None or "detect" not in spec.stages:
        return ""
    if tracker_choice(spec) == "sam2":
        return (f"video pairs: objects are followed by SAM 2's video predictor ({spec.sam2_config}, {sam2_checkpoint(spec)}) "
                "on the pair stage's CPUs (far slower than the template tracker)")
    import importlib.util

    name, url = SAM2_CHECKPOINTS[spec.sam2_config]
    if spec.random_init:
        why = "--random-weights"
    elif importlib.util.find_spec("sam2") is None:
        why = "the sam2 package is not installed (pip install --no-build-isolation sam2==1.1.0, with SAM2_BUILD_CUDA=0)"
    else:
        why = f"no SAM 2 checkpoint {name} ({_where(spec, url)}, or pass --sam2-checkpoint FILE)"
    return f"video pairs: objects are followed by the template tracker, not SAM 2's video predictor: {why}"


def sam2_checkpoint(spec: ModelSpec) -> Path:
    """The SAM 2 checkpoint (``--sam2-checkpoint`` or the config's official name in the models folder)."""
    if spec.sam2_checkpoint:
        return Path(spec.sam2_checkpoint).expanduser()
    name, url = SAM2_CHECKPOINTS[spec.sam2_config]
    return official_file(spec, f"SAM 2 {spec.sam2_config} checkpoint", name, url,
                         "or pass --sam2-checkpoint FILE, or use --segmenter grabcut")


def sam_checkpoint(spec: ModelSpec) -> Path:
    """The SAM checkpoint file for ``spec`` (``--sam-checkpoint`` or the official name in the models folder)."""
    if spec.sam_checkpoint:
        return Path(spec.sam_checkpoint).expanduser()
    name, url = SAM_CHECKPOINTS[spec.sam_model_type]
    return official_file(spec, f"SAM {spec.sam_model_type} checkpoint", name, url,
                         "or pass --sam-checkpoint FILE, or use --segmenter grabcut")


def dino_config(spec: ModelSpec) -> Path:
    """The GroundingDINO config file: ``--dino-config`` or the SwinT-OGC config shipped with groundingdino-py."""
    if spec.dino_config:
        return Path(spec.dino_config).expanduser()
    import groundingdino.config

    return Path(groundingdino.config.__file__).parent / DEFAULT_DINO_CONFIG


def dino_checkpoint(spec: ModelSpec) -> Path:
    """The GroundingDINO checkpoint: ``--dino-checkpoint`` or the config's official file in the models folder."""
    if spec.dino_checkpoint:
        return Path(spec.dino_checkpoint).expanduser()
    config_name = dino_config(spec).name
    if config_name not in DINO_CHECKPOINTS:
        raise MissingModelError(
            f"--dino-config {config_name}: no official checkpoint is known for this config; pass --dino-checkpoint FILE")
    name, url = DINO_CHECKPOINTS[config_name]
    return official_file(spec, "GroundingDINO checkpoint", name, url, "or pass --dino-checkpoint FILE")


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face hub: text encoder and open_clip weights


def _text_encoder_fix(name: str) -> str:
    include = " ".join(f"'{p}'" for p in _TEXT_ENCODER_PATTERNS)
    return (f"run `huggingface-cli download {name} --include {include} --local-dir DIR` "
            "on a machine with network, then pass --dino-text-encoder DIR")


def text_encoder_dir(name_or_dir: str) -> Path:
    """A local folder holding GroundingDINO's BERT text encoder (config, vocabulary, weights).

    ``name_or_dir`` is a folder, or a hub name resolved through the Hugging Face cache (downloaded when the hub is
    reachable). A folder is always passed on to GroundingDINO, which would otherwise fetch from the hub itself
    and, offline, hang on retries.
    """
    path = Path(name_or_dir).expanduser()
    looks_like_path = path.is_absolute() or name_or_dir.startswith((".", "~")) or path.exists()
    if looks_like_path:
        if not path.is_dir():
            raise MissingModelError(f"--dino-text-encoder {name_or_dir}: folder not found; {_text_encoder_fix('bert-base-uncased')}")
    else:
        from huggingface_hub import snapshot_download

        online = hub_online()
        try:
            path = Path(snapshot_download(name_or_dir, allow_patterns=_TEXT_ENCODER_PATTERNS, local_files_only=not online))
        except Exception as err:  # noqa: BLE001 - hub errors come in many types, all mean "not available"
            state = "hub unreachable and not in the Hugging Face cache" if not online else f"download failed ({type(err).__name__})"
            raise MissingModelError(f"GroundingDINO text encoder {name_or_dir}: {state}; {_text_encoder_fix(name_or_dir)}") from err
    missing = [f for f in ("config.json",) if not (path / f).is_file()]
    if not any((path / f).is_file() for f in ("vocab.txt", "tokenizer.json")):
        missing.append("vocab.txt")
    if not any((path / f).is_file() for f in ("model.safetensors", "pytorch_model.bin")):
        missing.append("model.safetensors")
    if missing:
        raise MissingModelError(
            f"GroundingDINO text encoder {name_or_dir}: {', '.join(missing)} missing in {path}; {_text_encoder_fix('bert-base-uncased')}")
    return path


@dataclass(frozen=True)
class OpenClipWeights:
    """A resolved open_clip model: ``file`` is ``None`` for random weights; ``tag_cfg`` carries the pretrained
    tag's preprocessing and activation settings, which a bare file path would lose."""

    model_name: str
    file: Path | None
    tag_cfg: dict[str, Any] = field(default_factory=dict)


def open_clip_weights(model_name: str, pretrained: str | None, flag: str) -> OpenClipWeights:
    """Resolve ``pretrained`` (an open_clip tag, a file, or ``None`` for random weights) to a local file."""
    import open_clip

    if model_name not in open_clip.list_models():
        raise UserError(f"{flag.replace('pretrained', 'model')} {model_name}: not an open_clip model name; "
                        "see open_clip.list_models()")
    if pretrained is None:
        return OpenClipWeights(model_name, None)
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        if Path(pretrained).expanduser().is_file():
            return OpenClipWeights(model_name, Path(pretrained).expanduser())
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
        raise MissingModelError(f"{flag} {pretrained}: neither a file nor a pretrained tag of {model_name} "
                                f"(tags: {tags})")
    return OpenClipWeights(model_name, _download_open_clip(cfg, model_name, pretrained, flag), dict(cfg))


def _download_open_clip(cfg: dict[str, Any], model_name: str, tag: str, flag: str) -> Path:
    online = hub_online()
    if cfg.get("hf_hub"):
        from huggingface_hub import hf_hub_download

        repo, filename = os.path.split(cfg["hf_hub"])  # "org/repo/" (default file names) or "org/repo/file"
        candidates = [filename] if filename else _OPEN_CLIP_FILES
        for name in candidates:
            try:
                return Path(hf_hub_download(repo, name, local_files_only=not online))
            except Exception:  # noqa: BLE001 - try the next file name, report below
                continue
        state = "hub unreachable and not in the Hugging Face cache" if not online else "download failed"
        raise MissingModelError(
            f"open_clip {model_name} weights '{tag}': {state}; run `huggingface-cli download {repo} --include "
            f"'open_clip_*'` on a machine with network and copy its Hugging Face cache here, or pass {flag} FILE")
    url = cfg.get("url", "")
    target = Path("~/.cache/clip").expanduser() / os.path.basename(url)
    if target.is_file():
        return target
    if online:
        from open_clip.pretrained import download_pretrained_from_url

        return Path(download_pretrained_from_url(url))
    raise MissingModelError(f"open_clip {model_name} weights '{tag}': not in {target.parent}; download {url} there, "
                            f"or pass {flag} FILE")


# ---------------------------------------------------------------------------------------------------------------
# everything at once


#: one item a model stage loads: raises a one-line ``UserError`` naming it and how to get it when it is missing
WeightCheck = Callable[[], object]


def check_weights(spec: ModelSpec) -> list[str]:
    """One line per missing weight file of the model stages ``spec`` runs (each stage's declared ``weights``),
    each naming how to get it; empty when a build can start. Loads no model."""
    if spec.random_init:
        return []
    checks = [check for stage in MODEL_STAGES.values() if stage.name in spec.stages and stage.weights
              for check in resolve(stage.weights)(spec)]
    problems = []
    for check in checks:
        try:
            check()
        except UserError as err:
            problems.append(str(err))
    return problems


def detect_weights(spec: ModelSpec) -> list[WeightCheck]:
    """GroundingDINO: its config, its checkpoint and its BERT text encoder."""
    return [lambda: _require_file(dino_config(spec), "--dino-config"),
            lambda: _require_file(dino_checkpoint(spec), "--dino-checkpoint"),
            lambda: text_encoder_dir(spec.dino_text_encoder)]


def segment_weights(spec: ModelSpec) -> list[WeightCheck]:
    """The checkpoint (and package) of the segmenter ``segmenter_choice`` picks; GrabCut needs none."""
    choice = segmenter_choice(spec)
    if choice == "sam":
        mobile = [lambda: _importable("mobile_sam", "--sam-model vit_t", "mobilesam-mirror==1.0.0")]
        return [*(mobile if spec.sam_model_type == "vit_t" else []),
                lambda: _require_file(sam_checkpoint(spec), "--sam-checkpoint")]
    if choice == "sam2":
        return [lambda: _importable("sam2", "--segmenter sam2", "--no-build-isolation sam2==1.1.0 (with SAM2_BUILD_CUDA=0)"),
                lambda: _require_file(sam2_checkpoint(spec), "--sam2-checkpoint")]
    return []


def caption_weights(spec: ModelSpec) -> list[WeightCheck]:
    return [lambda: open_clip_weights(spec.caption_model, spec.caption_pretrained, "--caption-pretrained")]


def categorize_weights(spec: ModelSpec) -> list[WeightCheck]:
    return [lambda: open_clip_weights(spec.clip_model, spec.clip_pretrained, "--clip-pretrained")]


def _importable(module: str, flag: str, install: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingModelError(f"{flag}: the {module} package is not installed; run pip install {install}")


def _require_file(path: Path, flag: str) -> None:
    if not path.is_file():
        raise MissingModelError(f"{flag} {path}: file not found")


def require_weights(spec: ModelSpec) -> None:
    """Raise one ``MissingModelError`` listing every missing item, or return. The one error of more than one line:
    each item names a file, a URL and a flag, so five of them on one line made a 1,300-character line nobody could
    read; a numbered list under one message can be worked through item by item."""
    problems = check_weights(spec)
    if problems:
        note = fallback_note(spec)
        lines = [f"{len(problems)} model file(s) missing, nothing was built:"]
        lines += [f"  ({i}) {p}" for i, p in enumerate(problems, 1)]
        lines += [f"  also, {note}"] if note else []
        raise MissingModelError("\n".join(lines))
