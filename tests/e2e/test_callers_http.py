"""The tenant matrix over HTTP (issue 13): each demo role, and a caller without a token,
against every action and read, on wallets inside and outside its boundary. POLICY is
the policy as one table. A refusal (401, 403 or 404) leaves nothing behind: no row in
any ledger table, no idempotency record claimed under the caller's tenant or any other.

The world, built once for the module over HTTP as the tests' own principal:
  own    a customer's two personal wallets (owner m-alice)
  ent    an enterprise tree: a root and two members (tenant m-acme)
  res    a reseller's tree: a root and two customers (tenant m-partner)
  other  another tenant's enterprise tree (m-globex)
Each role acts inside its boundary on one side and outside it on another (HOME_AWAY);
for the roles over every wallet, "outside" is just another tenant's tree.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.footprint import Footprint, idempotency_records
from tests.support import ensure_asset, http, key, principal

# Rows: actions and reads; columns: callers (the demo roles, and no token at all).
# A cell is inside/outside: the status on a wallet inside the caller's boundary, then
# on one outside it. 403: the role lacks the scope (wherever the wallet is); 404: the
# scope, but not there (the wallet's, transaction's or lot's own not-found, so ids
# can't be probed). "[]": 200 with nothing listed; "-": the request names no wallet.
POLICY = """
action        anonymous customer enterprise_admin reseller payment_service metering_service back_office operator
topup         401/401   403/403  403/403          403/403  201/201         403/403          403/403     403/403
addon         401/401   403/403  403/403          403/403  201/201         403/403          403/403     403/403
bonus         401/401   403/403  403/403          403/403  403/403         403/403          201/201     403/403
usage         401/401   403/403  403/403          403/403  403/403         201/201          403/403     403/403
transfer_out  401/401   201/404  201/404          403/403  403/403         403/403          403/403     403/403
transfer_in   401/401   201/404  201/404          403/403  403/403         403/403          403/403     403/403
void          401/401   403/403  403/403          403/403  403/403         403/403          201/201     201/201
allocate      401/401   403/403  201/404          201/404  403/403         403/403          403/403     201/201
reclaim       401/401   403/403  201/404          201/404  403/403         403/403          403/403     201/201
wallet_create 401/401   403/403  201/404          201/404  403/403         403/403          201/201     201/201
wallet_patch  401/401   403/403  200/404          200/404  403/403         403/403          200/200     200/200
root_status   401/401   403/403  403/404          403/404  403/403         403/403          200/200     200/200
credit_limit  401/401   403/403  403/404          403/404  403/403         403/403          200/200     200/200
lot_extend    401/401   403/403  403/404          403/404  403/403         403/403          200/200     200/200
asset_create  401/-     403/-    403/-            403/-    403/-           403/-            403/-       201/-
get_wallet    401/401   200/404  200/404          200/404  200/200         200/200          200/200     200/200
history       401/401   200/404  200/404          200/404  200/200         200/200          200/200     200/200
lots          401/401   200/404  200/404          200/404  200/200         200/200          200/200     200/200
rollup        401/401   200/404  200/404          200/404  200/200         200/200          200/200     200/200
members       401/401   200/404  200/404          200/404  200/200         200/200          200/200     200/200
transaction   401/401   200/404  200/404          200/404  200/200         200/200          200/200     200/200
lot           401/401   200/404  200/404          200/404  200/200         200/200          200/200     200/200
assets        401/-     200/-    200/-            200/-    200/-           200/-            200/-       200/-
list_by_owner 401/401   200/[]   200/[]           200/[]   200/200         200/200          200/200     200/200
"""
# The side each caller acts on inside its boundary, and the one outside it.
HOME_AWAY = {
    "anonymous": ("ent", "other"),
    "customer": ("own", "other"),
    "enterprise_admin": ("ent", "res"),
    "reseller": ("res", "ent"),
    "payment_service": ("ent", "other"),
    "metering_service": ("ent", "other"),
    "back_office": ("ent", "other"),
    "operator": ("ent", "other"),
}
MONEY = {"topup", "addon", "bonus", "usage", "transfer_out", "transfer_in", "void", "allocate", "reclaim"}
HIDDEN_AS = {"transaction": "transaction_not_found", "lot": "lot_not_found", "lot_extend": "lot_not_found"}


def parse_policy(text: str) -> dict[tuple[str, str, str], str]:
    lines = [line.split() for line in text.strip().splitlines()]
    roles = lines[0][1:]
    cells = {}
    for action, *row in lines[1:]:
        for role, cell in zip(roles, row, strict=True):
            inside, outside = cell.split("/")
            cells[(role, action, "inside")] = inside
            if outside != "-":
                cells[(role, action, "outside")] = outside
    return cells


CELLS = parse_policy(POLICY)


@dataclass(frozen=True)
class Side:
    model: str
    root: int
    wallet: int  # a tree's member (the own side: a personal wallet), funded, with an expiring lot
    wallet2: int  # another wallet of the side: the other end of a transfer
    owner: str  # `wallet`'s owner
    transaction: int  # a bonus posted to `wallet` alone
    lot: int  # that bonus's lot


@dataclass
class World:
    sides: dict[str, Side]
    tokens: dict[str, str]  # by role; "" sends no Authorization header
    principals: dict[str, str]  # role: principal id
    tenants: list[str]  # every tenant a record could be claimed in ("": unscoped)
    tenants_by_role: dict[str, str]
    footprint: Footprint


def ok(response, status=201):
    assert response.status_code == status, response.text
    return response.json()


def in_days(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _wallet(stack, **body) -> int:
    return ok(http(stack, "wallets", {"asset": "TST", **body}))["wallet"]["id"]


def _post(stack, function, body) -> dict:
    return ok(http(stack, function, {"asset": "TST", **body}, key("m-setup")))["transaction"]


def _side(stack, model: str, owner: str) -> Side:
    """A funded side: a tree (root and two members), or two personal wallets."""
    if model == "personal":
        wallet, wallet2 = _wallet(stack, owner_id=owner), _wallet(stack, owner_id=owner)
        root = wallet
        _post(stack, "topup", {"wallet_id": wallet, "amount": 100_000, "external_ref": key("m-setup")})
    else:
        root = _wallet(stack, owner_id=owner, model=model)
        wallet = _wallet(stack, owner_id=f"{owner}-1", model=model, parent_id=root)
        wallet2 = _wallet(stack, owner_id=f"{owner}-2", model=model, parent_id=root)
        _post(stack, "topup", {"wallet_id": root, "amount": 1_000_000, "external_ref": key("m-setup")})
        _post(stack, "allocate", {"wallet_id": wallet, "amount": 100_000})
        owner = f"{owner}-1"
    bonus = _post(stack, "bonus", {"wallet_id": wallet, "amount": 1_000, "expires_at": in_days(30)})
    lot = ok(http(stack, "wallets", method="GET", path=f"/wallets/{wallet}/lots"), 200)["lots"][0]["id"]
    return Side(model, root, wallet, wallet2, owner, bonus["id"], lot)


@pytest.fixture(scope="module")
def world(stack):
    ensure_asset(stack)
    sides = {
        "own": _side(stack, "personal", "m-alice"),
        "ent": _side(stack, "enterprise", "m-acme"),
        "res": _side(stack, "reseller", "m-partner"),
        "other": _side(stack, "enterprise", "m-globex"),
    }
    # (principal, role, boundary, root of its tree, tenant, owner id, kind): the demo's callers
    callers = [
        ("m-alice", "customer", "own", None, "m-alice", "m-alice", "user"),
        ("m-acme-admin", "enterprise_admin", "tree", sides["ent"].root, "m-acme", None, "user"),
        ("m-partner-admin", "reseller", "tree", sides["res"].root, "m-partner", None, "user"),
        ("m-payments", "payment_service", "all", None, "m-payments", None, "service"),
        ("m-metering", "metering_service", "all", None, "m-metering", None, "service"),
        ("m-backoffice", "back_office", "all", None, "m-backoffice", None, "service"),
        ("m-ops", "operator", "all", None, "m-ops", None, "operator"),
    ]
    tokens = {
        role: principal(stack, pid, role, bound, root, tenant, owner, kind)
        for pid, role, bound, root, tenant, owner, kind in callers
    }
    footprint = Footprint(stack)
    yield World(
        sides,
        {"anonymous": "", **tokens},
        {role: pid for pid, role, *_ in callers},
        ["", "tester", *(c[4] for c in callers)],
        {role: tenant for _, role, _, _, tenant, *_ in callers},
        footprint,
    )
    footprint.close()


_later = itertools.count(1)


def request(world: World, stack, role: str, action: str, where: str) -> tuple[str, str, str, dict | None]:
    """(function, method, path, body) of one cell's request."""
    home_name, away_name = HOME_AWAY[role]
    home, side = world.sides[home_name], world.sides[away_name if where == "outside" else home_name]
    w = side.wallet
    bodies = {
        "topup": {"wallet_id": w, "asset": "TST", "amount": 3, "external_ref": key("m-pay")},
        "addon": {"wallet_id": w, "asset": "TST", "amount": 3, "external_ref": key("m-pay"), "plan": "pro"},
        "bonus": {"wallet_id": w, "asset": "TST", "amount": 3},
        "usage": {"wallet_id": w, "asset": "TST", "amount": 1, "usage_id": key("m-use"), "product": "gpu"},
        "transfer_out": {"from_wallet_id": home.wallet, "to_wallet_id": side.wallet2, "asset": "TST", "amount": 1},
        "transfer_in": {"from_wallet_id": w, "to_wallet_id": home.wallet2, "asset": "TST", "amount": 1},
        "allocate": {"wallet_id": w, "asset": "TST", "amount": 2},
        "reclaim": {"wallet_id": w, "asset": "TST", "amount": 1},
    }
    if action in bodies:
        function = action.split("_")[0]
        return function, "POST", "/", bodies[action]
    if action == "void":
        # a fresh posting on the wallet, so that a void the policy allows succeeds
        fresh = _post(stack, "topup", {"wallet_id": w, "amount": 5, "external_ref": key("m-to-void")})
        return "void", "POST", "/", {"transaction_id": fresh["id"]}
    if action == "wallet_create":
        new_owner = f"m-new-{uuid.uuid4().hex[:12]}"
        if side.model == "personal":
            return "wallets", "POST", "/wallets", {"owner_id": side.owner, "asset": "TST"}
        return (
            "wallets",
            "POST",
            "/wallets",
            {"owner_id": new_owner, "asset": "TST", "model": side.model, "parent_id": side.root},
        )
    patches = {
        "wallet_patch": (w, {"status": "active"}),
        "root_status": (side.root, {"status": "active"}),
        "credit_limit": (side.root, {"credit_limit": 10}),
    }
    if action in patches:
        wallet_id, body = patches[action]
        return "wallets", "PATCH", f"/wallets/{wallet_id}", body
    if action == "lot_extend":
        return "wallets", "POST", f"/lots/{side.lot}/extend", {"expires_at": in_days(60 + next(_later))}
    if action == "asset_create":
        return "wallets", "POST", "/assets", {"code": f"M{uuid.uuid4().hex[:8].upper()}", "scale": 0}
    reads = {
        "get_wallet": f"/wallets/{w}",
        "history": f"/wallets/{w}/history",
        "lots": f"/wallets/{w}/lots",
        "rollup": f"/wallets/{side.root}/rollup",
        "members": f"/wallets/{side.root}/members",
        "transaction": f"/transactions/{side.transaction}",
        "lot": f"/lots/{side.lot}",
        "assets": "/assets",
        "list_by_owner": f"/wallets?owner_id={side.owner}",
    }
    return "wallets", "GET", reads[action], None


@pytest.mark.parametrize(("role", "action", "where"), list(CELLS), ids=["-".join(cell) for cell in CELLS])
def test_tenant_matrix(stack, world, role, action, where):
    expected = CELLS[(role, action, where)]
    function, method, path, body = request(world, stack, role, action, where)
    idempotency_key = key(f"m-{role}-{action}") if action in MONEY or action == "lot_extend" else None
    before = world.footprint.rows()
    response = http(stack, function, body, idempotency_key, method=method, path=path, token=world.tokens[role])

    status = 200 if expected == "[]" else int(expected)
    assert response.status_code == status, f"{role} {action} {where}: {response.status_code} {response.text}"
    answer = response.json()
    if status >= 400:
        code = {401: "unauthenticated", 403: "forbidden", 404: HIDDEN_AS.get(action, "wallet_not_found")}[status]
        assert answer["error"]["code"] == code, answer
        assert ("WWW-Authenticate" in response.headers) == (status == 401)
        assert world.footprint.rows() == before, "a refused request wrote rows"
        if idempotency_key is not None:
            assert idempotency_records(world.tenants, idempotency_key) == [], "a refused request claimed its key"
    elif action in MONEY:
        # the same checks see a success's footprint: one posting, its key claimed in the caller's tenant
        assert answer["transaction"]["actor"]["principal"] == world.principals[role]
        assert world.footprint.rows()["transactions"] == before["transactions"] + 1
        assert idempotency_records(world.tenants, idempotency_key) == [world.tenants_by_role[role]]
    elif action == "list_by_owner":
        listed = [wallet["id"] for wallet in answer["wallets"]]
        side = world.sides[HOME_AWAY[role][where == "outside"]]
        assert (listed == []) if expected == "[]" else (side.wallet in listed), listed


def test_a_wallet_outside_the_boundary_answers_as_one_that_does_not_exist(stack, world):
    """Ids can't be probed: the 404 of another tenant's wallet, transaction or lot is the
    404 of an id nobody has, but for the id it names, for every read and every write
    that names one, and neither writes anything."""
    ghost = 2**62
    home, other = world.sides["ent"], world.sides["other"]
    token = world.tokens["enterprise_admin"]
    reads = [
        ("/wallets/{}", other.wallet),
        ("/wallets/{}/history", other.wallet),
        ("/wallets/{}/members", other.root),
        ("/wallets/{}/rollup", other.root),
        ("/wallets/{}/lots", other.wallet),
        ("/transactions/{}", other.transaction),
        ("/lots/{}", other.lot),
    ]
    # (function, path, body naming the id): writes whose other wallet is the probed one
    writes = [
        ("transfer", "/", lambda w: {"from_wallet_id": home.wallet, "to_wallet_id": w, "asset": "TST", "amount": 1}),
        ("allocate", "/", lambda w: {"wallet_id": w, "asset": "TST", "amount": 1}),
        (
            "wallets",
            "/wallets",
            lambda w: {"owner_id": "m-probe", "asset": "TST", "model": "enterprise", "parent_id": w},
        ),
    ]
    calls = [
        (lambda i, p=p: http(stack, "wallets", method="GET", path=p.format(i), token=token), real) for p, real in reads
    ]
    calls += [
        (lambda i, f=f, p=p, b=b: http(stack, f, b(i), key("m-probe"), path=p, token=token), other.wallet2)
        for f, p, b in writes
    ]
    before = world.footprint.rows()
    for call, real in calls:
        outside, missing = call(real), call(ghost)
        assert outside.status_code == missing.status_code == 404, (outside.text, missing.text)
        assert outside.text.replace(str(real), "ID") == missing.text.replace(str(ghost), "ID")
    assert world.footprint.rows() == before


def test_a_division_admin_cannot_pull_money_from_above_its_tree(stack, world):
    """Allocate and reclaim move money along one edge: a tree admin whose root is a
    member of a bigger tree may move money below its root, not between its root and
    the root's parent."""
    ent = world.sides["ent"]
    team = _wallet(stack, owner_id="m-acme-1-team", model="enterprise", parent_id=ent.wallet)
    token = principal(stack, "m-division-admin", "enterprise_admin", "tree", ent.wallet, "m-acme", kind="user")
    before = world.footprint.rows()
    for function in ("allocate", "reclaim"):
        refused = http(stack, function, {"wallet_id": ent.wallet, "asset": "TST", "amount": 1}, key(), token=token)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "wallet_not_found", refused.text
    assert world.footprint.rows() == before
    ok(http(stack, "allocate", {"wallet_id": team, "asset": "TST", "amount": 5}, key(), token=token))
    ok(http(stack, "reclaim", {"wallet_id": team, "asset": "TST", "amount": 2}, key(), token=token))
