"""Deterministic damage for media files: truncated, zeroed, byte-swapped, bit-flipped."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

Mutation = Callable[[bytes], bytes]


def truncate(fraction: float) -> Mutation:
    def mutate(data: bytes) -> bytes:
        return data[: int(len(data) * fraction)]
    return mutate


def zero(at: float, length: int) -> Mutation:
    def mutate(data: bytes) -> bytes:
        start = int(len(data) * at)
        return data[:start] + bytes(min(length, len(data) - start)) + data[start + length:]
    return mutate


def byte_swap(at: float, length: int) -> Mutation:
    """Swaps each pair of bytes in a range (a 16-bit endianness mix-up)."""
    def mutate(data: bytes) -> bytes:
        out = bytearray(data)
        start = int(len(data) * at) & ~1
        for i in range(start, min(start + length, len(out) - 1), 2):
            out[i], out[i + 1] = out[i + 1], out[i]
        return bytes(out)
    return mutate


def bit_flip(count: int, seed: int, skip: int = 0) -> Mutation:
    """Flips ``count`` bits at positions drawn with a fixed seed (after ``skip`` bytes)."""
    def mutate(data: bytes) -> bytes:
        out = bytearray(data)
        chosen = random.Random(seed)  # reproducible damage, not security
        for _ in range(count):
            position = chosen.randrange(min(skip, len(out) - 1), len(out))
            out[position] ^= 1 << chosen.randrange(8)
        return bytes(out)
    return mutate


#: Name -> damage; each applies to every container.
MUTATIONS: dict[str, Mutation] = {
    "truncated-head": truncate(0.02),
    "truncated-half": truncate(0.5),
    "zeroed-head": zero(0.0, 4096),
    "zeroed-middle": zero(0.4, 16384),
    "swapped-head": byte_swap(0.0, 8192),
    "swapped-middle": byte_swap(0.5, 32768),
    "bitflip-sparse": bit_flip(40, seed=22, skip=1024),
    "bitflip-dense": bit_flip(2000, seed=7, skip=1024),
}


def write_mutant(clean: Path, mutation: str, directory: Path) -> Path:
    target = directory / f"{clean.stem}-{mutation}{clean.suffix}"
    target.write_bytes(MUTATIONS[mutation](clean.read_bytes()))
    return target
