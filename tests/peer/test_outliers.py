"""Strikes and bans of far-outlier authors (unit tests, a fake clock)."""

from __future__ import annotations

from learnae.peer.outliers import OutlierBans


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_two_strikes_ban_an_author_for_a_while_and_repeats_ban_longer():
    clock = Clock()
    bans = OutlierBans(clock=clock)
    assert not bans.note("a", outlier=True) and bans.banned() == set()
    assert bans.note("a", outlier=True) and bans.banned() == {"a"}
    clock.t += OutlierBans.BAN_S + 1
    assert bans.banned() == set()
    bans.note("a", outlier=True)
    bans.note("a", outlier=True)
    clock.t += OutlierBans.BAN_S + 1  # the second ban is twice as long
    assert bans.banned() == {"a"}
    clock.t += OutlierBans.BAN_S
    assert bans.banned() == set()


def test_contributions_within_the_usual_distance_clear_the_strikes():
    bans = OutlierBans(clock=Clock())
    bans.note("honest", outlier=True)  # far once (say, just restarted from an old checkpoint)
    for _ in range(OutlierBans.CLEAN):
        bans.note("honest", outlier=False)
    assert not bans.note("honest", outlier=True) and bans.banned() == set()
    bans.note("b", outlier=True)
    bans.note("b", outlier=False)  # one near one is not enough
    assert bans.note("b", outlier=True) and bans.banned() == {"b"}
