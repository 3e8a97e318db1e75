"""How a run ends and is judged: max_steps seen in the peers' records, final values over a window,
and no PASS while expected peers failed."""

from __future__ import annotations

import pytest

from learnae.peer.record import MetricsRecord
from learnae.scenario.assembly import evaluate_expectations, final_summary, judged_accuracy, judged_consensus
from learnae.scenario.report import ConsensusSample, PeerFinal, PeerReport
from learnae.scenario.schema import parse_scenario


def records(accs: list[float], *, every: float = 2.0, steps: list[int] | None = None) -> list[MetricsRecord]:
    steps = steps or [10 * (i + 1) for i in range(len(accs))]
    return [MetricsRecord(time=1000.0 + every * i, step=st, test_accuracy=a) for i, (a, st) in enumerate(zip(accs, steps))]


def test_a_noisy_last_sample_does_not_decide_a_peers_accuracy():
    # the swing of the issue: 0.60-0.87 between 2 s samples, the last one low
    swinging = records([0.5, 0.7, 0.84, 0.62, 0.87, 0.85, 0.60])
    judged = judged_accuracy(swinging, max_steps=0, window_s=8.0)
    assert judged == pytest.approx(0.84)  # median of the last 8 s: 0.84, 0.62, 0.87, 0.85, 0.60 (older ones out)
    assert judged_accuracy(swinging, max_steps=0, window_s=0.1) == 0.60  # a zero-width window is the last sample


def test_a_peer_that_trained_to_max_steps_is_judged_on_its_final_model():
    # after the final consensus the model no longer trains: its last evaluation is the result
    recs = records([0.80, 0.82, 0.81, 0.96], steps=[500, 550, 600, 600])
    assert judged_accuracy(recs, max_steps=600, window_s=10.0) == 0.96
    assert judged_accuracy(records([0.8, 0.9]), max_steps=600, window_s=10.0) == pytest.approx(0.85)
    assert judged_accuracy([MetricsRecord(time=1.0, step=3)], max_steps=0, window_s=10.0) is None


def test_consensus_distance_is_judged_like_accuracy():
    samples = [ConsensusSample(float(t), d, 2 * d, 3) for t, d in [(0, 9.0), (10, 0.5), (12, 0.1), (14, 0.4),
                                                                    (16, 0.2)]]
    final = ConsensusSample(18.0, 0.3, 0.6, 3)
    assert judged_consensus(samples + [final], final, end_reason="duration", window_s=8.0) == (0.3, 0.6)
    assert judged_consensus(samples, final, end_reason="duration", window_s=8.0) == (0.3, 0.6)  # final added once
    assert judged_consensus(samples, final, end_reason="max_steps", window_s=8.0) == (0.3, 0.6)
    assert judged_consensus([], ConsensusSample(1.0, 0.0, 0.0, 4), end_reason="max_steps", window_s=8.0) == (0.0, 0.0)
    assert judged_consensus([], None, end_reason="duration", window_s=8.0) == (None, None)


def peer(state: str, acc: float | None = 0.9, *, honest: bool = True, returncode: int = 0) -> PeerReport:
    return PeerReport(peer_id="12D3KooW", index=0, rule="mean", slow=1.0, attack=None, honest=honest, state=state,
                      returncode=returncode, starts=1, final=PeerFinal(step=100, test_accuracy=acc, judged_accuracy=acc))


def scenario(**extra):
    return parse_scenario({"name": "t", "duration": "60s", "peers": 3, **extra})


def test_a_run_never_passes_while_a_peer_the_timeline_leaves_running_failed():
    s = scenario(expect=["mean_accuracy >= 0.8"])
    # peer-2 died of the SIGINT of the graceful stop (exit -2): the situation of the issue
    peers = {"peer-0": peer("stopped"), "peer-1": peer("finished"), "peer-2": peer("failed", returncode=-2)}
    final = final_summary(peers, (0.1, 0.2), 60.0, 10.0)
    results = evaluate_expectations(s, final, peers)
    assert [r.ok for r in results] == [True, False]
    assert results[1].expect == "peers_alive == 3 (implicit: peer-2 did not end alive)" and results[1].value == 2
    healthy = {n: peer("stopped") for n in peers}
    results = evaluate_expectations(s, final_summary(healthy, (0.1, 0.2), 60.0), healthy)
    assert all(r.ok for r in results) and results[-1].expect.startswith("peers_alive == 3 (implicit")


def test_peers_the_timeline_kills_or_has_not_started_yet_are_not_expected_alive():
    s = scenario(events=[{"at": "10s", "kill": "peer-1"}, {"at": "50s", "join": "late"}])
    peers = {"peer-0": peer("stopped"), "peer-1": peer("killed"), "peer-2": peer("stopped"),
             "late": peer("never-started", None)}
    ended_early = evaluate_expectations(s, final_summary(peers, (None, None), 30.0), peers, until=30.0)
    assert ended_early[-1].ok and ended_early[-1].expect.startswith("peers_alive == 2 ")
    at_the_end = evaluate_expectations(s, final_summary(peers, (None, None), 60.0), peers, until=60.0)
    assert not at_the_end[-1].ok and "late did not end alive" in at_the_end[-1].expect


def test_an_explicit_peers_alive_replaces_the_implicit_one_but_still_names_no_failed_peer():
    s = scenario(expect=["peers_alive == 3"])
    peers = {"peer-0": peer("stopped"), "peer-1": peer("stopped"), "peer-2": peer("stopped")}
    results = evaluate_expectations(s, final_summary(peers, (None, None), 60.0), peers)
    assert [r.expect for r in results] == ["peers_alive == 3"] and results[0].ok


def test_final_accuracies_are_the_judged_ones_of_honest_peers_alive_at_the_end():
    peers = {"a": peer("stopped", 0.9), "b": peer("finished", 0.7), "c": peer("stopped", 0.1, honest=False),
             "d": peer("killed", 0.2)}
    final = final_summary(peers, (0.5, 0.9), 40.0, 10.0)
    assert (final.mean_accuracy, final.min_accuracy, final.max_accuracy) == (pytest.approx(0.8), 0.7, 0.9)
    assert (final.consensus_distance, final.max_consensus_distance, final.window_s) == (0.5, 0.9, 10.0)
    assert final.peers_alive == 3


class _Proc:
    def __init__(self, alive: bool):
        self.alive = alive


def test_the_runner_sees_max_steps_in_the_peers_own_records(tmp_path):
    from learnae.scenario.runner import Runner
    from learnae.scenario.schema import plan

    runner = Runner(plan(scenario(train={"max_steps": 100})), tmp_path)
    for p in runner.peers.values():
        p.proc = _Proc(alive=True)
    at = {n: records([0.9], steps=[100]) for n in runner.peers}
    assert runner._all_at_max_steps(at)
    assert not runner._all_at_max_steps({**at, "peer-1": records([0.9], steps=[95])})  # one is still training
    assert not runner._all_at_max_steps({**at, "peer-2": []})  # one has written nothing yet
    runner.peers["peer-2"].proc = _Proc(alive=False)  # an exited peer no longer counts
    assert runner._all_at_max_steps({**at, "peer-2": []})
    endless = Runner(plan(scenario()), tmp_path / "endless")  # max_steps 0: the run ends at its duration
    for p in endless.peers.values():
        p.proc = _Proc(alive=True)
    assert not endless._all_at_max_steps({n: records([0.9], steps=[10**6]) for n in endless.peers})
