"""Stable seeds derived from integers, identical in every process and on every machine."""

from __future__ import annotations

import random


def stable_seed(*parts: int) -> int:
    """A 63-bit seed from integers; unlike ``hash`` of a string it does not change between processes."""
    return random.Random(",".join(str(int(p)) for p in parts)).getrandbits(63)
