"""The fault suite's plan is drawn from its seed alone, so a run is replayable from the seed it prints."""

from __future__ import annotations

from tests.faults.plan import BROKER, SERVICES, PoisonKind, make_plan


def test_the_same_seed_makes_the_same_plan_and_another_seed_another() -> None:
    assert make_plan(42, 60, 4) == make_plan(42, 60, 4)
    assert make_plan(42, 60, 4) != make_plan(43, 60, 4)


def test_a_plan_has_its_faults_every_poison_kind_and_about_one_percent_poison() -> None:
    plan = make_plan(7, 200, 5)
    assert len(plan.faults) == 5
    assert all(f.target in (*SERVICES, BROKER) for f in plan.faults)
    assert {p.kind for p in plan.poison} == set(PoisonKind), "every kind at least once"
    assert len(plan.poison) == 16, "1 % of roughly 8 records per application"
    assert len({s.ags for s in plan.submissions}) > 190, "fresh applicants, so the double-funding rule stays quiet"
    assert 0 < plan.pot_cents < 200 * 9_600_000, "less money than asked for: the waitlist is exercised"
    assert [s.at for s in plan.submissions] == sorted(s.at for s in plan.submissions)
