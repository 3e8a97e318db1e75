"""A snapshot entry names each merged parent once, however many merges came before it."""

from __future__ import annotations

import dag_cbor

from learnae.ledger.schema import MAX_PARENTS, Parent, check_body
from learnae.peer.merging import accumulate_parents
from learnae.storage.cid import cid_of


def entry_cid(i: int):
    return cid_of(dag_cbor.encode({"i": i}), "dag-cbor")


def body(parents):
    return {"model": cid_of(b"model"), "step": 10, "samples": 320, "metrics": {}, "parents": Parent.to_bodies(parents)}


def test_a_parent_merged_twice_before_a_publish_is_named_once_with_its_weights_summed():
    a, b, c = entry_cid(1), entry_cid(2), entry_cid(3)
    parents = accumulate_parents([], [Parent(a, 0.25), Parent(b, 0.25)])
    parents = accumulate_parents(parents, [Parent(a, 0.2), Parent(c, 0.3)])
    assert parents == [Parent(a, 0.45), Parent(b, 0.25), Parent(c, 0.3)]
    assert check_body("snapshot", body(parents)) is None  # the ledger signs it


def test_more_parents_than_an_entry_may_name_keep_the_heaviest():
    parents = []
    for i in range(MAX_PARENTS + 10):
        parents = accumulate_parents(parents, [Parent(entry_cid(i), 1.0 + i)])
    assert len(parents) == MAX_PARENTS
    assert min(p.weight for p in parents) == 11.0  # the ten lightest were left out
    assert check_body("snapshot", body(parents)) is None


def test_the_input_lists_are_not_modified():
    a = entry_cid(1)
    held, new = [Parent(a, 0.5)], [Parent(a, 0.5)]
    accumulate_parents(held, new)
    assert held == [Parent(a, 0.5)] and new == [Parent(a, 0.5)]
