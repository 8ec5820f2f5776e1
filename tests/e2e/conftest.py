import pytest

from tests.support import assert_invariants, ensure_asset, last_transaction_id


@pytest.fixture(autouse=True)
def money_invariants(stack):
    """After every integration test: entries sum to zero per asset, cached balances equal
    entry sums, no customer is below its limit, and every transaction the test posted
    follows its action's rule (those before were checked after their own tests)."""
    ensure_asset(stack)
    checked = last_transaction_id(stack)
    yield
    assert_invariants(stack, since_transaction_id=checked)
