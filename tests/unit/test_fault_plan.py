"""The fault suite's plan is drawn from its seed alone, so a run is replayable from the seed it prints."""

from __future__ import annotations

from tests.faults.plan import BROKER, CRASH_POINTS, DATABASE, SECOND, SERVICES, FaultKind, PoisonKind, make_plan


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


def test_over_a_few_seeds_every_fault_kind_crash_point_and_target_comes_up() -> None:
    faults = [f for seed in range(40) for f in make_plan(seed, 100, 5).faults]
    assert {f.kind for f in faults} == set(FaultKind)
    assert {f.point for f in faults if f.kind is FaultKind.CRASH} == {p for ps in CRASH_POINTS.values() for p in ps}
    assert {BROKER, DATABASE, "budget@2"} <= {f.target for f in faults}


def test_crash_points_fit_their_service_and_a_rebalance_needs_a_second_instance() -> None:
    for seed in range(40):
        plan = make_plan(seed, 100, 5)
        assert plan.doubled and set(plan.doubled) <= {"review", "budget", "notify"}
        for fault in plan.faults:
            if fault.kind is FaultKind.CRASH:
                assert fault.point in CRASH_POINTS[fault.service]
            if fault.kind is FaultKind.REBALANCE:
                assert fault.target in plan.doubled
            if fault.target in (BROKER, DATABASE):
                assert fault.kind in (FaultKind.KILL, FaultKind.PAUSE)
