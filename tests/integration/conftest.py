import pytest

from tests.support import assert_invariants, ensure_asset


@pytest.fixture(autouse=True)
def money_invariants(stack):
    """After every integration test: entries sum to zero per asset, cached balances equal
    entry sums, and no customer is below its limit."""
    ensure_asset(stack)
    yield
    assert_invariants(stack)
