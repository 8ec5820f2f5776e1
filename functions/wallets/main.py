"""HTTP function `wallets`: wallet admin and reads, assets, transactions.

POST  /wallets                  create a wallet
GET   /wallets?owner_id=O       an owner's wallets
GET   /wallets/{id}             a wallet with its balance
PATCH /wallets/{id}             change status (active, frozen, closed) or credit limit
GET   /wallets/{id}/history     entries, newest first (?action=&from=&to=&limit=&cursor=)
GET   /wallets/{id}/lots        per-lot breakdown: open lots, earliest expiry first (?all=true: every lot)
GET   /wallets/{id}/rollup      a node's balance plus all its descendants', per child, summed on read
GET   /wallets/{id}/members     every wallet below a node, in id order (?after=&limit=)
GET   /lots/{id}                one lot
POST  /lots/{id}/extend         move a lot's expiry later (Idempotency-Key)
GET   /transactions/{id}        a transaction with its entries
GET   /assets, POST /assets     list or create assets (with their system accounts)
"""

import functions_framework

from common import bootstrap
from common.errors import InvalidRequest, NotFound
from common.http import (
    IDEMPOTENCY_HEADER,
    endpoint,
    json_object,
    json_response,
    outcome_response,
    parse,
    path_segments,
    require_method,
)


def _id(segment):
    if not segment.isdigit() or not 0 < int(segment) < 2**63:
        raise InvalidRequest(f"'{segment}' is not an id", code="invalid_id")
    return int(segment)


def _bounded(request, name, default, maximum):
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > maximum:
        raise InvalidRequest(f"{name} is a whole number up to {maximum}", code="validation_failed")
    return int(raw)


def _commands():
    """The command models, and pydantic with them, load with the first request that has
    a body or query to parse: a plain read starts without them (cold starts)."""
    from common.ledger import commands

    return commands


@functions_framework.http
@endpoint
def wallets(request):
    service = bootstrap.service()
    path = path_segments(request, "wallets")
    if path[:1] == ["lots"] and len(path) in (2, 3):
        lot_id = _id(path[1])
        if len(path) == 3 and path[2] == "extend":
            require_method(request, "POST")
            command = parse(_commands().ExtendLot, json_object(request))
            return outcome_response(service.extend_lot(lot_id, command, request.headers.get(IDEMPOTENCY_HEADER)))
        if len(path) == 2:
            require_method(request, "GET")
            return json_response(200, {"lot": service.get_lot(lot_id)})
    if path[:1] == ["transactions"] and len(path) == 2:
        require_method(request, "GET")
        return json_response(200, {"transaction": service.get_transaction(_id(path[1]))})
    if path == ["assets"]:
        require_method(request, "GET", "POST")
        if request.method == "POST":
            asset = service.create_asset(parse(_commands().CreateAsset, json_object(request)))
            return json_response(201, {"asset": asset})
        return json_response(200, {"assets": service.list_assets()})
    if not path:
        require_method(request, "GET", "POST")
        if request.method == "POST":
            wallet = service.create_wallet(parse(_commands().CreateWallet, json_object(request)))
            return json_response(201, {"wallet": wallet})
        owner_id = request.args.get("owner_id")
        if not owner_id:
            raise InvalidRequest("give owner_id to list wallets", code="validation_failed")
        return json_response(200, {"wallets": service.list_wallets(owner_id)})
    if len(path) == 1:
        require_method(request, "GET", "PATCH")
        if request.method == "PATCH":
            command = parse(_commands().UpdateWallet, json_object(request))
            return json_response(200, {"wallet": service.update_wallet(_id(path[0]), command)})
        return json_response(200, {"wallet": service.get_wallet(_id(path[0]))})
    if len(path) == 2 and path[1] == "lots":
        require_method(request, "GET")
        return json_response(200, service.lots(_id(path[0]), request.args.get("all") == "true"))
    if len(path) == 2 and path[1] == "rollup":
        require_method(request, "GET")
        return json_response(200, service.rollup(_id(path[0])))
    if len(path) == 2 and path[1] == "members":
        require_method(request, "GET")
        after, limit = _bounded(request, "after", 0, 2**63 - 1), _bounded(request, "limit", 100, 500)
        return json_response(200, service.members(_id(path[0]), after, max(limit, 1)))
    if len(path) == 2 and path[1] == "history":
        require_method(request, "GET")
        query = parse(_commands().HistoryQuery, request.args.to_dict())
        return json_response(200, service.history(_id(path[0]), query))
    raise NotFound(f"no route for {request.path}", code="route_not_found")
