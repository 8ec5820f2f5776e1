"""The cold-start yardsticks' tables (bench/yardsticks.py) against what they describe:
every package a function's yardstick names has a first call in the yardstick function,
every function named exists, and the startup CPU boost the docs say the pinned provider
lacks for functions is indeed missing there. That each function's first request uses
exactly its yardstick's packages is checked against the real stack, in
tests/e2e/test_cold_start.py."""

import ast
from pathlib import Path

import pytest

from bench.yardsticks import BACKGROUND, CALL_LABELS, CALLS, NEEDS, PACKAGES
from tests.unit.test_terraform_schema import schema_problems

REPO = Path(__file__).resolve().parents[2]
YARDSTICK = REPO / "bench" / "empty_function" / "main.py"


def first_calls() -> set[str]:
    """The keys of FIRST_CALLS in the yardstick function, read without importing it."""
    for node in ast.parse(YARDSTICK.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "FIRST_CALLS":
            return {key.value for key in node.value.keys}  # type: ignore[attr-defined]
    raise AssertionError("no FIRST_CALLS in the yardstick function")


def test_every_package_a_yardstick_names_has_a_first_call():
    named = {package for packages in NEEDS.values() for package in packages}
    assert named <= first_calls() and named <= set(PACKAGES)
    assert {package for packages in BACKGROUND.values() for package in packages} <= set(PACKAGES)


def test_every_other_dependency_a_yardstick_calls_has_a_first_call_and_is_no_package():
    called = {call for calls in CALLS.values() for call in calls}
    assert called <= first_calls() and called <= set(CALL_LABELS) and not called & set(PACKAGES)
    assert set(CALLS) <= set(NEEDS)


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_every_function_with_a_yardstick_exists(name):
    assert (REPO / "functions" / name / "main.py").is_file()


def test_a_yardstick_calls_its_packages_in_the_order_a_request_meets_them():
    order = list(PACKAGES)
    for name, packages in NEEDS.items():
        assert list(packages) == sorted(packages, key=order.index), name


def test_functions_have_no_startup_cpu_boost_in_the_pinned_provider_and_cloud_run_services_do():
    """docs/infrastructure.md: gen2 functions cannot ask for the startup CPU boost through
    Terraform (provider 6.50); a Cloud Run service can. When the provider gains it, this
    fails: then set it in functions.tf and say so there."""
    function = (
        'resource "google_cloudfunctions2_function" "f" {\n  name = "f"\n'
        "  service_config {\n    startup_cpu_boost = true\n  }\n}\n"
    )
    found = schema_problems(function)
    assert len(found) == 1 and "startup_cpu_boost: no such attribute" in found[0], found
    service = (
        'resource "google_cloud_run_v2_service" "s" {\n  name = "s"\n  location = "l"\n'
        '  template {\n    containers {\n      image = "i"\n      resources {\n'
        "        startup_cpu_boost = true\n      }\n    }\n  }\n}\n"
    )
    assert schema_problems(service) == []
