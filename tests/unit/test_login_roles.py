"""Every database login Terraform declares is mapped to a role db/logins.py grants."""

from db import logins
from infra import hcl


def test_every_declared_login_maps_to_a_function_role():
    declared = hcl.terraform().locals["database_logins"]
    assert {login["db_role"] for login in declared.values()} <= logins.FUNCTION_ROLES
    assert "ledger_owner" not in logins.FUNCTION_ROLES and logins.AUDIT_ROLE not in logins.FUNCTION_ROLES
