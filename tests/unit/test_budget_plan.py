"""Budget: first come, first served from the fiscal-year pots, and who waits where and why."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import WaitlistReason
from services.budget.domain import Policy, QueuedApplication, ServicePlan, in_line, plan_service

pytestmark = pytest.mark.unit

T0 = datetime(2027, 1, 15, 9, 0, tzinfo=UTC)
OPEN, PAUSED = "dms_eservices", "e_akte"


def app(
    number: int,
    funding: dict[int, int],
    *,
    ready: int | None = None,
    received: int = 0,
    category: str = OPEN,
) -> QueuedApplication:
    """Times are minutes after T0; ready defaults to the number, so the line follows the numbers."""
    return QueuedApplication(
        application_id=f"TH-EGOV-2027-{number:06d}",
        place_at=T0 + timedelta(minutes=number if ready is None else ready),
        received_at=T0 + timedelta(minutes=received),
        category=category,
        funding=funding,
    )


def ids(apps: list[QueuedApplication]) -> list[str]:
    return [a.application_id[-3:] for a in apps]


def waiting(plan: ServicePlan) -> list[tuple[str, int, WaitlistReason]]:
    return [(w.application.application_id[-3:], w.position, w.reason) for w in plan.waiting]


# --- order -----------------------------------------------------------------------


def test_line_is_by_place_at_then_received_at_then_id() -> None:
    queue = [
        app(5, {2027: 1}, ready=10, received=1),
        app(4, {2027: 1}, ready=10, received=1),  # same times as 005: the id decides
        app(3, {2027: 1}, ready=10, received=0),  # same place_at, received earlier
        app(9, {2027: 1}, ready=5, received=9),  # complete first, though received last
        app(1, {2027: 1}, ready=20, received=0),
    ]
    expected = ["009", "003", "004", "005", "001"]
    for seed in range(5):
        shuffled = queue[:]
        random.Random(seed).shuffle(shuffled)
        assert ids(in_line(shuffled)) == expected
        assert ids(plan_service(shuffled, {2027: 100}, set()).served) == expected


def test_the_earlier_ready_application_gets_the_last_money() -> None:
    late_but_received_first = app(1, {2027: 60}, ready=20, received=0)
    ready_first = app(2, {2027: 60}, ready=10, received=5)
    plan = plan_service([late_but_received_first, ready_first], {2027: 100}, set())
    assert ids(plan.served) == ["002"]
    assert waiting(plan) == [("001", 1, WaitlistReason.INSUFFICIENT_FUNDS)]


def test_exact_fit_is_served_and_uses_the_pot_up() -> None:
    plan = plan_service([app(1, {2027: 100}), app(2, {2027: 1})], {2027: 100}, set(), "first_fit")
    assert ids(plan.served) == ["001"]
    assert waiting(plan) == [("002", 1, WaitlistReason.INSUFFICIENT_FUNDS)]


def test_empty_queue_gives_empty_plan() -> None:
    plan = plan_service([], {2027: 100}, set())
    assert plan.served == []
    assert plan.waiting == []


def test_plan_does_not_change_the_available_mapping() -> None:
    available = {2027: 100}
    plan_service([app(1, {2027: 60})], available, set())
    assert available == {2027: 100}


# --- strict versus first fit -----------------------------------------------------------


def test_strict_a_later_smaller_one_does_not_jump_an_earlier_one_that_does_not_fit() -> None:
    queue = [app(1, {2027: 600}), app(2, {2027: 100}), app(3, {2027: 50})]
    plan = plan_service(queue, {2027: 500}, set(), "strict")
    assert plan.served == []
    assert waiting(plan) == [
        ("001", 1, WaitlistReason.INSUFFICIENT_FUNDS),
        ("002", 2, WaitlistReason.INSUFFICIENT_FUNDS),
        ("003", 3, WaitlistReason.INSUFFICIENT_FUNDS),
    ]


def test_strict_is_the_default_policy() -> None:
    queue = [app(1, {2027: 600}), app(2, {2027: 100})]
    assert plan_service(queue, {2027: 500}, set()) == plan_service(queue, {2027: 500}, set(), "strict")
    assert plan_service(queue, {2027: 500}, set()).served == []


def test_strict_does_not_block_an_application_for_another_year() -> None:
    queue = [app(1, {2027: 600}), app(2, {2028: 100}), app(3, {2027: 100})]
    plan = plan_service(queue, {2027: 500, 2028: 500}, set(), "strict")
    assert ids(plan.served) == ["002"]
    assert waiting(plan) == [
        ("001", 1, WaitlistReason.INSUFFICIENT_FUNDS),
        ("003", 2, WaitlistReason.INSUFFICIENT_FUNDS),
    ]


def test_strict_serves_in_order_until_the_first_that_does_not_fit() -> None:
    queue = [app(1, {2027: 200}), app(2, {2027: 200}), app(3, {2027: 200}), app(4, {2027: 1})]
    plan = plan_service(queue, {2027: 500}, set(), "strict")
    assert ids(plan.served) == ["001", "002"]
    assert [w[0] for w in waiting(plan)] == ["003", "004"]


def test_first_fit_serves_later_ones_that_fit() -> None:
    queue = [app(1, {2027: 600}), app(2, {2027: 300}), app(3, {2027: 300}), app(4, {2027: 200})]
    plan = plan_service(queue, {2027: 500}, set(), "first_fit")
    assert ids(plan.served) == ["002", "004"]
    assert waiting(plan) == [
        ("001", 1, WaitlistReason.INSUFFICIENT_FUNDS),
        ("003", 2, WaitlistReason.INSUFFICIENT_FUNDS),
    ]


# --- paused categories and missing pots ------------------------------------------------


@pytest.mark.parametrize("policy", ["strict", "first_fit"])
def test_paused_category_waits_without_blocking_others(policy: Policy) -> None:
    queue = [app(1, {2027: 900}, category=PAUSED), app(2, {2027: 400}), app(3, {2027: 100}, category=PAUSED)]
    plan = plan_service(queue, {2027: 500}, {PAUSED}, policy)
    assert ids(plan.served) == ["002"]
    assert waiting(plan) == [
        ("001", 1, WaitlistReason.CATEGORY_PAUSED),
        ("003", 2, WaitlistReason.CATEGORY_PAUSED),  # would fit, but may not be approved
    ]


def test_pausing_is_per_category() -> None:
    plan = plan_service([app(1, {2027: 100}, category=PAUSED)], {2027: 500}, set())
    assert ids(plan.served) == ["001"]


def test_missing_pot_waits_with_no_pot() -> None:
    plan = plan_service([app(1, {2029: 100}), app(2, {2027: 100})], {2027: 500}, set(), "strict")
    assert ids(plan.served) == ["002"]
    assert waiting(plan) == [("001", 1, WaitlistReason.NO_POT)]


def test_paused_wins_over_no_pot() -> None:
    plan = plan_service([app(1, {2029: 100}, category=PAUSED)], {}, {PAUSED})
    assert waiting(plan) == [("001", 1, WaitlistReason.CATEGORY_PAUSED)]


def test_empty_pot_is_a_pot_without_money_not_a_missing_one() -> None:
    plan = plan_service([app(1, {2027: 1})], {2027: 0}, set())
    assert waiting(plan) == [("001", 1, WaitlistReason.INSUFFICIENT_FUNDS)]


# --- multi-year applications ---------------------------------------------------------


def test_multi_year_needs_every_year_to_fit() -> None:
    multi = app(1, {2027: 100, 2028: 100})
    assert waiting(plan_service([multi], {2027: 500, 2028: 99}, set())) == [
        ("001", 1, WaitlistReason.INSUFFICIENT_FUNDS)
    ]
    assert waiting(plan_service([multi], {2027: 500}, set())) == [("001", 1, WaitlistReason.NO_POT)]
    assert ids(plan_service([multi], {2027: 100, 2028: 100}, set()).served) == ["001"]


def test_multi_year_reserves_in_every_year() -> None:
    queue = [app(1, {2027: 100, 2028: 400}), app(2, {2028: 200}), app(3, {2027: 400})]
    plan = plan_service(queue, {2027: 500, 2028: 500}, set(), "first_fit")
    assert ids(plan.served) == ["001", "003"]
    assert waiting(plan) == [("002", 1, WaitlistReason.INSUFFICIENT_FUNDS)]


def test_amount_is_the_sum_over_years() -> None:
    assert app(1, {2027: 100, 2028: 250}).amount_cents == 350


# --- positions ------------------------------------------------------------------------


def test_positions_are_one_to_n_in_line_order() -> None:
    queue = [
        app(6, {2027: 10}, ready=60),
        app(2, {2027: 900}, ready=20),
        app(4, {2029: 10}, ready=40),
        app(1, {2027: 10}, ready=10),
        app(3, {2027: 10}, ready=30, category=PAUSED),
        app(5, {2027: 10}, ready=50),
    ]
    plan = plan_service(queue, {2027: 500}, {PAUSED}, "strict")
    assert ids(plan.served) == ["001"]
    assert waiting(plan) == [
        ("002", 1, WaitlistReason.INSUFFICIENT_FUNDS),
        ("003", 2, WaitlistReason.CATEGORY_PAUSED),
        ("004", 3, WaitlistReason.NO_POT),
        ("005", 4, WaitlistReason.INSUFFICIENT_FUNDS),
        ("006", 5, WaitlistReason.INSUFFICIENT_FUNDS),
    ]


# --- properties ------------------------------------------------------------------------

YEARS = (2027, 2028, 2029)
CATEGORIES = ("a", "b", "c")


@st.composite
def queues(draw: st.DrawFn) -> list[QueuedApplication]:
    count = draw(st.integers(0, 12))
    numbers = draw(st.lists(st.integers(1, 999), min_size=count, max_size=count, unique=True))
    return [
        app(
            n,
            draw(st.dictionaries(st.sampled_from(YEARS), st.integers(1, 1000), min_size=1, max_size=3)),
            ready=draw(st.integers(0, 5)),  # small ranges: ties are common
            received=draw(st.integers(0, 5)),
            category=draw(st.sampled_from(CATEGORIES)),
        )
        for n in numbers
    ]


@settings(max_examples=300, deadline=None, database=None)
@given(
    queue=queues(),
    available=st.dictionaries(st.sampled_from(YEARS), st.integers(0, 3000)),
    paused=st.sets(st.sampled_from(CATEGORIES)),
    policy=st.sampled_from(["strict", "first_fit"]),
)
def test_plan_properties(
    queue: list[QueuedApplication], available: dict[int, int], paused: set[str], policy: Policy
) -> None:
    plan = plan_service(queue, available, paused, policy)
    line = in_line(queue)
    rank = {a.application_id: i for i, a in enumerate(line)}

    # Everyone is accounted for exactly once; both lists keep line order; positions are 1..n.
    served_ids = [a.application_id for a in plan.served]
    waiting_ids = [w.application.application_id for w in plan.waiting]
    assert sorted(served_ids + waiting_ids) == sorted(a.application_id for a in queue)
    assert served_ids == sorted(served_ids, key=rank.__getitem__)
    assert waiting_ids == sorted(waiting_ids, key=rank.__getitem__)
    assert [w.position for w in plan.waiting] == list(range(1, len(plan.waiting) + 1))

    # Never more than available, never from a missing pot, never a paused category.
    used: dict[int, int] = defaultdict(int)
    for a in plan.served:
        assert a.category not in paused
        for year, amount in a.funding.items():
            assert year in available
            used[year] += amount
    assert all(used[y] <= available[y] for y in used)

    remaining = {y: available[y] - used[y] for y in available}
    for w in plan.waiting:
        a = w.application
        if a.category in paused:
            assert w.reason is WaitlistReason.CATEGORY_PAUSED
        elif any(y not in available for y in a.funding):
            assert w.reason is WaitlistReason.NO_POT
        else:
            assert w.reason is WaitlistReason.INSUFFICIENT_FUNDS
            if policy == "first_fit":
                # It did not fit at its turn, and the pots only shrank after that.
                assert any(amount > remaining[y] for y, amount in a.funding.items())

    if policy == "strict":
        # Per year, the served applications are a prefix of the (unpaused) line for that year.
        served = set(served_ids)
        for year in YEARS:
            flags = [a.application_id in served for a in line if year in a.funding and a.category not in paused]
            assert flags == sorted(flags, reverse=True), (year, flags)
