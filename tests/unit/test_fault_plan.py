"""The fault suite's plan is drawn from its seed alone, so a run is replayable from the seed it prints."""

from __future__ import annotations

from tests.faults.plan import BROKER, CRASH_POINTS, DATABASE, SECOND, SERVICES, FaultKind, PoisonKind, make_plan

CLUSTER_KINDS = {FaultKind.KILL_LEADER, FaultKind.KILL_CONTROLLER, FaultKind.PAUSE_LEADER}


def test_the_same_seed_makes_the_same_plan_and_another_seed_another() -> None:
    assert make_plan(42, 60, 4) == make_plan(42, 60, 4)
    assert make_plan(42, 60, 4) != make_plan(43, 60, 4)


def test_a_plan_has_its_faults_every_poison_kind_and_about_one_percent_poison() -> None:
    plan = make_plan(7, 200, 5)
    assert len(plan.faults) == 5
    instances = (*SERVICES, *(d + SECOND for d in plan.doubled))
    assert all(f.target in (*instances, BROKER, DATABASE) for f in plan.faults)
    assert {p.kind for p in plan.poison} == set(PoisonKind), "every kind at least once"
    assert len(plan.poison) == 16, "1 % of roughly 8 records per application"
    assert len({s.ags for s in plan.submissions}) > 190, "fresh applicants, so the double-funding rule stays quiet"
    assert 0 < plan.pot_cents < 200 * 9_600_000, "less money than asked for: the waitlist is exercised"
    assert [s.at for s in plan.submissions] == sorted(s.at for s in plan.submissions)


def test_a_single_broker_plan_never_asks_for_a_cluster_fault() -> None:
    for seed in range(50):
        plan = make_plan(seed, 60, 6)
        assert plan == make_plan(seed, 60, 6, cluster=1), "one broker is the default"
        assert not {f.kind for f in plan.faults} & CLUSTER_KINDS


def test_a_cluster_plan_kills_a_leader_then_the_controller_and_pauses_a_leader() -> None:
    for seed in range(50):
        plan = make_plan(seed, 100, 4, cluster=3)
        broker_faults = [f for f in plan.faults if f.target == BROKER]
        assert {f.kind for f in broker_faults} <= CLUSTER_KINDS, "a cluster node is chosen when the fault strikes"
        assert len(plan.faults) == 4 + 3, "the drawn faults and the cluster's three"
        first = {kind: min(f.at for f in broker_faults if f.kind is kind) for kind in CLUSTER_KINDS}
        assert first[FaultKind.KILL_LEADER] < first[FaultKind.KILL_CONTROLLER], "the leader first, then the controller"
        assert all(f.at <= 25.0 for f in broker_faults), "during the stream (100 applications at 4 a second)"
        assert all(1 <= f.seconds <= 12 for f in broker_faults), "a node is back within seconds"
        assert [f.at for f in plan.faults] == sorted(f.at for f in plan.faults)


def test_a_cluster_plan_is_replayable_and_carries_the_same_stream_as_one_broker() -> None:
    assert make_plan(5, 100, 4, cluster=3) == make_plan(5, 100, 4, cluster=3)
    single, cluster = make_plan(5, 100, 4), make_plan(5, 100, 4, cluster=3)
    assert cluster.submissions == single.submissions
    assert cluster.withdrawals == single.withdrawals
    assert cluster.poison == single.poison


def test_over_a_few_seeds_every_fault_kind_crash_point_and_target_comes_up() -> None:
    faults = [f for seed in range(40) for f in make_plan(seed, 100, 5).faults]
    assert {f.kind for f in faults} == set(FaultKind) - CLUSTER_KINDS
    assert {f.point for f in faults if f.kind is FaultKind.CRASH} == {p for ps in CRASH_POINTS.values() for p in ps}
    assert {BROKER, DATABASE, "budget@2"} <= {f.target for f in faults}


def test_crash_points_fit_their_service_and_a_rebalance_needs_a_second_instance() -> None:
    for seed in range(40):
        plan = make_plan(seed, 100, 5)
        assert plan.doubled
        assert set(plan.doubled) <= {"review", "budget", "notify"}
        for fault in plan.faults:
            if fault.kind is FaultKind.CRASH:
                assert fault.point in CRASH_POINTS[fault.service]
            if fault.kind is FaultKind.REBALANCE:
                assert fault.target in plan.doubled
            if fault.target in (BROKER, DATABASE):
                assert fault.kind in (FaultKind.KILL, FaultKind.PAUSE)
