"""Structural checks of infra/terraform that need no provider download (the functions it
deploys: test_function_list.py)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "infra" / "terraform"
SOURCE = "\n".join(path.read_text() for path in sorted(TERRAFORM.glob("*.tf")))


def test_terraform_is_formatted():
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed")
    result = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_idempotency_records_have_a_ttl_on_expire_at():
    block = re.search(r'resource "google_firestore_field" "idempotency_ttl" \{(.*?)\n\}', SOURCE, re.S).group(1)
    assert '"idempotency_keys"' in block and '"expire_at"' in block and "ttl_config" in block


def test_database_uses_iam_authentication_and_private_ip():
    flat = re.sub(r"\s+", " ", SOURCE)
    assert 'name = "cloudsql.iam_authentication" value = "on"' in flat
    assert "ipv4_enabled = false" in flat
    assert 'type = "CLOUD_IAM_SERVICE_ACCOUNT"' in flat


def test_no_broad_roles_are_granted():
    assert not re.search(r"roles/(owner|editor)\b", SOURCE)


def test_an_empty_function_list_stops_the_plan():
    """Run from a copy without ../../functions, the list would be empty and a plan would
    destroy every function: a precondition refuses it."""
    flat = re.sub(r"\s+", " ", SOURCE)
    assert "precondition { condition = length(local.function_names) > 0" in flat
