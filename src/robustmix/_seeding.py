"""The one seeding rule: every random draw is a fixed function of (seed, dataset index, stream).

So results do not depend on batch size, order, resumption or sharding.  Two
forms of the same rule: :func:`example_seed` gives a 63-bit generator seed on
the host (noise chunks of randomized smoothing, PGD's random starts), and
:func:`example_keys` gives 32-bit keys computed on the inputs' device for
batched, generator-free noise (the worst-case evaluator's APGD starts).
``stream`` separates uses of one example (an attack member, a restart, the
selection and estimation samples of a certificate).
"""

from __future__ import annotations

import hashlib

import torch

MASK32 = 0xFFFFFFFF


def example_seed(seed: int, index: int, stream: int = 0, chunk: int = 0) -> int:
    """A 63-bit generator seed for draw ``chunk`` of example ``index`` in ``stream`` (BLAKE2b of the four)."""
    key = f"{int(seed)}/{int(index)}/{int(stream)}/{int(chunk)}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2^32 for int64 x in [0, 2^32), without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixing function (Wellons' lowbias32) on int64 tensors holding values in [0, 2^32)."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def example_keys(seed: int, indices: torch.Tensor, stream: int) -> torch.Tensor:
    """One 32-bit key per example from (seed, dataset index, stream), on the indices' device."""
    base = hash32(torch.tensor(int(seed) & MASK32, dtype=torch.int64, device=indices.device))
    return hash32(hash32(base ^ (indices.to(torch.int64) & MASK32)) ^ (int(stream) & MASK32))
