"""Files from elsewhere are untrusted: no pickle is ever executed, no tar member is ever written to disk."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
import torch

from unieditkit.errors import UserError


class _Payload:
    """Unpickling this runs ``touch MARKER``: the classic malicious-pickle payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_code_is_refused_without_running_it(tmp_path: Path) -> None:
    from unieditkit.training.runtime.checkpoint import load_checkpoint

    marker = tmp_path / "pwned"
    path = tmp_path / "step_00000001.pt"
    torch.save({"format": 1, "model": _Payload(marker)}, path)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(path, model, opt, sched, None)
    assert not marker.exists()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def test_training_reader_ignores_hostile_members(built_dataset: Path, tmp_path: Path) -> None:
    """A shard with path-traversal names and a pickle member: samples still decode, nothing lands on disk."""
    import pickle

    import webdataset as wds

    from unieditkit.format import MEMBERS

    marker = tmp_path / "pwned"
    good = next(iter(wds.WebDataset(str(sorted(built_dataset.glob("*.tar"))[0]), shardshuffle=False)))
    shard = tmp_path / "work" / "evil-train-000000.tar"
    shard.parent.mkdir()
    with tarfile.open(shard, "w") as tf:
        for m in (*MEMBERS, "json"):
            _add(tf, f"{good['__key__']}.{m}", good[m])
        _add(tf, f"{good['__key__']}.pyd", pickle.dumps(_Payload(marker)))
        _add(tf, "../../escaped.json", b"{}")
        _add(tf, "/tmp/absolute.json", b"{}")
    from unieditkit.training.model.anchors import Anchors
    from unieditkit.training.data import decode_sample

    anchors = Anchors.from_taxonomy()
    samples = list(wds.DataPipeline(wds.SimpleShardList([str(shard)]), wds.tarfile_to_samples()))
    decoded, failed = [], []
    for sample in samples:  # the training loader skips and counts what fails; here we look at each one
        try:
            decoded.append(decode_sample(sample, "fine", 32, anchors))
        except (KeyError, ValueError):
            failed.append(sample["__key__"])
    assert [d["key"] for d in decoded] == [good["__key__"]]
    assert sorted(failed) == ["../../escaped", "/tmp/absolute"]
    assert not marker.exists(), "a pickle member was unpickled"
    assert not (tmp_path / "escaped.json").exists() and not Path("/tmp/absolute.json").exists()
