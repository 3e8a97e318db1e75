"""Every decoder of outside bytes raises only learnae's own errors, on any input.

The targets and mutators are bench/decoder_fuzz.py's (snapshot, shard, manifest,
checkpoint, identity key, ledger entry, dag-pb, UnixFS reader, Bitswap message);
here hypothesis drives them: random bytes, byte-level mutations of valid
encodings, and structured mutations (a field anywhere in the decoded structure
replaced, deleted or added with a hostile value, then encoded validly again).
A modest number of examples per decoder keeps this part of ``make test``
fast; ``python -m bench.decoder_fuzz`` runs over 100,000 cases.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.decoder_fuzz import GUARD_REASON, mutate_bytes, outcome, run, targets

TARGETS = {t.name: t for t in targets()}
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(name: str, data: bytes) -> str:
    """The outcome of one input; anything but the target's own errors fails the test (with the input)."""
    try:
        result = outcome(TARGETS[name], data)
    except Exception as exc:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{name} decoder raised {type(exc).__name__}: {exc!r} on {data[:300]!r}")
    # the decoders' last-resort guard turns a missed check into a rejection; no input may need it
    assert result != GUARD_REASON, f"{name}: an input reached the decoder's guard: {data[:300]!r}"
    return result


@pytest.mark.parametrize("name", list(TARGETS))
@FAST
@given(data=st.binary(max_size=512))
def test_random_bytes(name, data):
    check(name, data)


@pytest.mark.parametrize("name", list(TARGETS))
@FAST
@given(rng=st.randoms(use_true_random=False))
def test_byte_mutations_of_valid_encodings(name, rng):
    target = TARGETS[name]
    check(name, mutate_bytes(rng.choice(target.seeds), rng))


@pytest.mark.parametrize("name", list(TARGETS))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False))
def test_structured_mutations_of_valid_encodings(name, rng):
    target = TARGETS[name]
    check(name, target.structured(rng.choice(target.seeds), rng))


@pytest.mark.parametrize("name", list(TARGETS))
def test_valid_encodings_are_accepted(name):
    """The seeds are valid: the mutations start from inputs that pass every check."""
    for seed in TARGETS[name].seeds:
        assert check(name, seed) == "unchanged"


def test_a_seeded_run_counts_every_case_and_finds_nothing_unexpected():
    counts, bugs = run(1800, seed=3)
    assert sum(counts.values()) == 1800 and not bugs
    assert not [k for k in counts if k[1] == GUARD_REASON]
    per_target = {name: sum(n for (t, _), n in counts.items() if t == name) for name in TARGETS}
    assert set(per_target.values()) == {200}  # spread evenly
    rejected = {k for (t, k) in counts if t == "snapshot"}
    assert {"non-canonical", "bad-header", "bad-tensor", "not-finite"} <= rejected  # past the parser
    assert not [k for k in counts if k[0] == "entry" and k[1] == "accepted"]  # no mutated entry verifies
