"""Rate limits without Redis: which limit applies, and what the answer's headers say."""

import pytest

from common import rate_limits
from common.config import Settings
from common.rate_limits import Bucket, Decision, NoLimiter, Rate, resolve, response_headers
from tests.unit.test_cold_imports import heavy_modules_loaded_by

DEFAULTS = {"money": Rate(20, 40), "read": Rate(50, 100), "admin": Rate(5, 10)}


def test_defaults_alone():
    assert resolve("money", None, None, DEFAULTS) == Rate(20, 40)
    assert resolve("read", {}, {}, DEFAULTS) == Rate(50, 100)


def test_a_role_overrides_the_defaults_for_its_classes_only():
    role = {"money": {"per_second": 500, "burst": 1000}}
    assert resolve("money", role, None, DEFAULTS) == Rate(500, 1000)
    assert resolve("admin", role, None, DEFAULTS) == Rate(5, 10)


def test_a_missing_field_comes_from_the_level_below():
    assert resolve("money", {"money": {"burst": 7}}, None, DEFAULTS) == Rate(20, 7)
    assert resolve("money", {"money": {"per_second": 100}}, {"money": {"burst": 3}}, DEFAULTS) == Rate(100, 3)


def test_the_principals_override_wins_over_its_role_either_way():
    role = {"read": {"per_second": 200, "burst": 400}}
    assert resolve("read", role, {"read": {"per_second": 1, "burst": 2}}, DEFAULTS) == Rate(1, 2)
    assert resolve("read", role, {"read": {"per_second": 900}}, DEFAULTS) == Rate(900, 400)
    assert resolve("read", role, {"money": {"per_second": 1}}, DEFAULTS) == Rate(200, 400)


def test_several_roles_give_the_most_generous_of_them():
    tight = {"money": {"per_second": 2, "burst": 500}}
    loose = {"money": {"per_second": 300, "burst": 4}}
    assert resolve("money", [tight, loose], None, DEFAULTS) == Rate(300, 500)
    # a role that names no money limit allows the default, which beats a tighter role
    assert resolve("money", [tight, {}], None, DEFAULTS) == Rate(20, 500)
    assert resolve("money", [], None, DEFAULTS) == Rate(20, 40)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ([], "must be an object"),
        ({"writes": {"burst": 1}}, "unknown action class 'writes'"),
        ({"money": 50}, "'money' must be an object"),
        ({"money": {"per_second": 5, "rate": 1}}, "unknown fields \\['rate'\\]"),
        ({"money": {"per_second": 0}}, "money.per_second must be between"),
        ({"money": {"per_second": -3}}, "money.per_second must be between"),
        ({"money": {"per_second": "10"}}, "money.per_second must be a number"),
        ({"money": {"per_second": True}}, "money.per_second must be a number"),
        ({"money": {"per_second": float("nan")}}, "money.per_second must be a number"),
        ({"read": {"burst": 0}}, "read.burst must be between 1"),
        ({"read": {"burst": 2.5}}, "read.burst must be a whole number"),
        ({"read": {"burst": 10_000_000}}, "read.burst must be between 1"),
    ],
)
def test_a_malformed_limits_document_is_refused_with_its_fault_named(limits, message):
    with pytest.raises(ValueError, match=message):
        rate_limits.limits_of(limits)
    with pytest.raises(ValueError, match=message):
        resolve("read", None, limits, DEFAULTS)


def test_an_unknown_action_class_is_refused():
    with pytest.raises(ValueError, match="unknown action class"):
        resolve("write", None, None, DEFAULTS)
    with pytest.raises(ValueError, match="unknown action class"):
        Bucket("alice", "write")


def test_the_rate_keeps_its_interval_in_whole_microseconds():
    assert Rate(20, 1).interval_us == 50_000
    assert Rate(3, 1).interval_us == 333_333
    assert Rate(0.5, 1).interval_us == 2_000_000
    assert Rate(1_000_000, 1).interval_us == 1
    with pytest.raises(ValueError):
        Rate(0, 1)


def test_the_bucket_key_names_the_principal_and_class():
    assert Bucket("svc:payments@acme", "money").key == "ratelimit:svc:payments@acme:money"


def test_an_allowed_answer_has_the_ratelimit_headers_and_no_retry_after():
    decision = Decision(allowed=True, limit=40, remaining=39, reset_s=0.05, retry_after_s=0.0)
    assert response_headers(decision) == {"RateLimit-Limit": "40", "RateLimit-Remaining": "39", "RateLimit-Reset": "1"}


def test_a_refusal_has_retry_after_in_whole_seconds_rounded_up():
    decision = Decision(allowed=False, limit=40, remaining=0, reset_s=2.0, retry_after_s=1.2)
    assert response_headers(decision) == {
        "RateLimit-Limit": "40",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "2",
        "Retry-After": "2",
    }
    # a wait shorter than a second is still at least one: "0" would invite an instant retry
    soon = Decision(allowed=False, limit=40, remaining=0, reset_s=0.001, retry_after_s=0.0004)
    assert response_headers(soon)["Retry-After"] == "1"


def test_an_unenforced_decision_allows_and_claims_nothing():
    decision = NoLimiter().check(Bucket("alice", "money"), Rate(1, 1))
    assert decision.allowed and not decision.enforced
    assert response_headers(decision) == {}


def test_the_defaults_come_from_the_settings():
    settings = Settings.from_env({"LEDGER_RATE_LIMIT_MONEY_PER_S": "2.5", "LEDGER_RATE_LIMIT_ADMIN_BURST": "3"})
    defaults = rate_limits.defaults_from(settings)
    assert defaults["money"] == Rate(2.5, Settings.rate_limit_money_burst)
    assert defaults["admin"] == Rate(Settings.rate_limit_admin_per_s, 3)
    assert defaults["read"] == Rate(Settings.rate_limit_read_per_s, Settings.rate_limit_read_burst)
    assert Settings.from_env({"LEDGER_RATE_LIMIT_ENABLED": "false"}).rate_limit_enabled is False


def test_the_limits_core_loads_no_client_library_and_disabled_limits_load_no_redis():
    assert heavy_modules_loaded_by("import common.rate_limits") == []
    off = (
        "import os\nos.environ['LEDGER_RATE_LIMIT_ENABLED'] = 'false'\n"
        "from common import bootstrap\nassert type(bootstrap.rate_limiter()).__name__ == 'NoLimiter'"
    )
    assert heavy_modules_loaded_by(off) == []


def test_building_the_limiter_connects_nowhere():
    build = (
        "import os\nos.environ['LEDGER_REDIS_URL'] = 'redis://127.0.0.1:9/0'\n"
        "from common import bootstrap\nassert type(bootstrap.rate_limiter()).__name__ == 'RedisRateLimiter'"
    )  # a closed port: a connection attempt would raise
    assert heavy_modules_loaded_by(build) == ["redis"]
