"""Structural checks of infra/terraform that need no provider download."""

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


def test_every_function_folder_is_deployed_with_its_own_entry_point():
    folders = sorted(p.name for p in (REPO / "functions").iterdir() if (p / "main.py").exists())
    http = set(
        re.search(r"http_functions\s*=\s*toset\(\[([^\]]*)\]\)", SOURCE)
        .group(1)
        .replace('"', "")
        .replace(" ", "")
        .split(",")
    )
    ticked = set(re.findall(r"^\s+(\w+)\s+= google_pubsub_topic\.ticks\[\"", SOURCE, re.M))
    assert ticked == {"erp_export", "outbox_sweeper", "erp_reconcile", "lot_expiry"}
    assert sorted(http | ticked) == folders
    flat = re.sub(r"\s+", " ", SOURCE)
    assert "for_each = local.http_functions" in flat and "for_each = local.tick_functions" in flat
    assert flat.count("entry_point = each.key") == 2


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
