"""The build's fast paths give the bytes of the plain formulas they replaced (``bench/profile_build.py`` found
the costs; BENCHMARKS.md "Build throughput" has the profile). Each oracle here is the straightforward numpy
version, kept only as the test's reference."""

from __future__ import annotations

import numpy as np
import pytest

from unieditkit.pipelines.stages.pair import adjust_tone, make_reference, tone_factors
from unieditkit.format import GREY


def every_channel_value_pair() -> np.ndarray:
    """One pixel per (channel level, HSV value) pair that can occur (a channel never exceeds the value), so a
    per-pixel function of the two is checked exhaustively: 32,896 pixels."""
    channel, value = np.meshgrid(np.arange(256), np.arange(256))
    ok = channel <= value
    pixels = np.zeros((int(ok.sum()), 1, 3), np.uint8)
    pixels[:, 0, 0] = value[ok]
    pixels[:, 0, 1] = channel[ok]
    pixels[:, 0, 2] = channel[ok][::-1].clip(0, value[ok])  # another channel level, still <= the value
    return pixels


@pytest.mark.parametrize("draw", range(12))
def test_tone_change_equals_the_numpy_formula_on_every_channel_value_pair(draw: int) -> None:
    rng = np.random.default_rng(draw)
    b, c, g = rng.uniform(-0.1, 0.1), rng.uniform(0.8, 1.2), float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    pixels = every_channel_value_pair()
    value = pixels.max(axis=2)
    oracle = np.clip(np.rint(pixels * tone_factors(b, c, g)[value][..., None]), 0, 255).astype(np.uint8)
    assert np.array_equal(adjust_tone(pixels, b, c, g), oracle)


def test_reference_is_the_object_on_grey() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    mask = np.zeros((240, 320), bool)
    mask[60:180, 100:200] = True
    mask[100:120, 200:260] = True
    ref, ref_mask, _ = make_reference(image, mask, (100, 60, 260, 180), 128, np.random.default_rng(0))
    assert ref_mask.any() and not ref_mask.all()
    assert (ref[~ref_mask] == GREY).all()
    assert (ref[ref_mask] != GREY).any(axis=-1).mean() > 0.9


def test_shard_tar_is_byte_for_byte_what_webdatasets_tarwriter_writes(tmp_path) -> None:
    import io
    import tarfile

    import webdataset as wds

    from unieditkit.pipelines.writer import write_sample

    samples = [("garments_a_00", {"json": b'{"k": 1}', "tgt.jpg": b"\xff\xd8jpeg", "mask_fine.png": b"\x89PNG" * 300}),
               ("garments_b-c_01", {"json": b"{}", "ref.jpg": bytes(range(256)) * 40, "ref_mask.png": b""})]
    ours, theirs = io.BytesIO(), io.BytesIO()
    with tarfile.open(fileobj=ours, mode="w|") as stream:
        for key, members in samples:
            write_sample(stream, key, members)
    with wds.TarWriter(theirs, user="unieditkit", group="unieditkit", mode=0o644, encoder=False, mtime=0) as tw:
        for key, members in samples:
            tw.write({"__key__": key, **members})
    assert ours.getvalue() == theirs.getvalue()
    (tmp_path / "shard.tar").write_bytes(ours.getvalue())
    assert [s["__key__"] for s in wds.WebDataset([str(tmp_path / "shard.tar")], shardshuffle=False)] == [k for k, _ in samples]


def test_a_blocks_unit_list_is_used_only_when_it_accounts_for_exactly_its_rows() -> None:
    import pyarrow as pa

    from unieditkit.pipelines.distributor import block_units, tag_units, tagged_units

    block = pa.table({"shard": ["s0", "s0", "s1"], "unit_id": ["a", "a", "b"], "unit_rows": [2, 2, 1], "key": ["x", "y", "z"]})
    tagged = tag_units(block)
    assert tagged.equals(block) and tagged_units(tagged.schema, 3) == block_units(block) == [("s0", "a", 2), ("s0", "a", 2), ("s1", "b", 1)]
    assert tagged_units(tagged.schema, 2) is None, "a block Ray Data split or merged: its rows are counted by a task"
    assert tagged_units(block.schema, 3) is None and tagged_units(None, 3) is None
