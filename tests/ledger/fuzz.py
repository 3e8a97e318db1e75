"""Random and mutated inputs for fuzzing the entry decoder (tests/ledger/test_entry.py, bench/ledger_fuzz.py).

A decoder of network bytes must answer every input with a value or an
:class:`~learnae.errors.InvalidEntryError`, never another exception.

Example:
    >>> import random
    >>> cases = list(fuzz_cases([b"\\xa0"], 10, random.Random(0)))
    >>> len(cases)
    10
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

__all__ = ["mutate", "fuzz_cases", "run_fuzz"]

_INTERESTING = (0x00, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1F, 0x40, 0x5F, 0x60, 0x7F, 0x80, 0x9F, 0xA0,
                0xBF, 0xC0, 0xD8, 0x2A, 0xF4, 0xF5, 0xF6, 0xF7, 0xF9, 0xFA, 0xFB, 0xFF)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """Apply 1-4 random edits (flip, set, insert, delete, truncate, splice) to ``data``."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        i = rng.randrange(len(buf) + 1) if buf else 0
        if op == 0 and buf:
            buf[min(i, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[min(i, len(buf) - 1)] = rng.choice(_INTERESTING)
        elif op == 2:
            buf[i:i] = bytes([rng.choice(_INTERESTING)])
        elif op == 3 and buf:
            del buf[min(i, len(buf) - 1)]
        elif op == 4:
            del buf[i:]
        elif op == 5 and buf:
            j = rng.randrange(len(buf))
            buf[i:i] = buf[j:j + rng.randint(1, 16)]
        else:
            buf[i:i] = rng.randbytes(rng.randint(1, 8))
    return bytes(buf)


def fuzz_cases(seeds: Sequence[bytes], n: int, rng: random.Random) -> Iterator[bytes]:
    """Yield ``n`` inputs: 1 in 8 random bytes, the rest mutations of a seed."""
    for _ in range(n):
        if rng.randrange(8) == 0:
            yield rng.randbytes(rng.randint(0, 600))
        else:
            yield mutate(rng.choice(seeds), rng)


def run_fuzz(decode, seeds: Sequence[bytes], n: int, seed: int = 0) -> dict[str, int]:
    """Feed ``n`` cases to ``decode``; count outcomes by reason.

    "ok" counts accepted inputs that differ from every seed (a decoder bug, or a
    forged signature: should stay 0); "unchanged" counts mutations that undid themselves.

    Any exception other than :class:`~learnae.errors.InvalidEntryError` propagates,
    with the offending input attached as ``exc.fuzz_input``.
    """
    from learnae.errors import InvalidEntryError

    counts: dict[str, int] = {}
    originals = set(seeds)
    for case in fuzz_cases(seeds, n, random.Random(seed)):
        try:
            decode(case)
            key = "unchanged" if case in originals else "ok"
        except InvalidEntryError as exc:
            key = exc.reason
        except Exception as exc:
            exc.fuzz_input = case
            raise
        counts[key] = counts.get(key, 0) + 1
    return counts
