"""Advancing the balance checkpoints in steps (common/balance_checkpoints.py): until a
step comes back short, or the time is up, at least one step either way."""

from common.balance_checkpoints import advance


class Store:
    def __init__(self, steps):
        self.steps, self.calls = list(steps), 0

    def advance(self, max_rows):
        self.calls += 1
        return min(self.steps.pop(0) if self.steps else 0, max_rows)

    def horizon(self):
        return {"created_xact": 9, "transaction_id": 42, "accounts": 7}


def test_steps_until_a_step_comes_back_short():
    store = Store([10, 10, 4, 10])
    report = advance(store, batch=10)
    assert store.calls == 3
    assert report == {
        "transactions": 24,
        "caught_up": True,
        "horizon": {"created_xact": 9, "transaction_id": 42, "accounts": 7},
    }


def test_stops_when_the_budget_is_spent_and_says_it_is_behind():
    ticks = iter(range(100))
    store = Store([10] * 50)
    report = advance(store, batch=10, budget_s=2, clock=lambda: next(ticks))
    assert store.calls == 2
    assert report["transactions"] == 20 and not report["caught_up"]


def test_a_spent_budget_still_takes_one_step():
    store = Store([10, 10])
    assert advance(store, batch=10, budget_s=0)["transactions"] == 10
