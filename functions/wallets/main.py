"""HTTP function `wallets`: wallet admin and reads, assets, transactions.

POST  /wallets                  create a wallet
GET   /wallets?owner_id=O       an owner's wallets
GET   /wallets/{id}             a wallet with its balance
PATCH /wallets/{id}             change status (active, frozen, closed), credit limit, spend mode or limits
GET   /wallets/{id}/history     entries, newest first (?action=&from=&to=&limit=&cursor=)
GET   /wallets/{id}/lots        per-lot breakdown: open lots, earliest expiry first (?all=true: every lot)
GET   /wallets/{id}/rollup      a node's balance plus all its descendants', per child, summed on read
GET   /wallets/{id}/members     every wallet below a node, in id order (?after=&limit=)
GET   /lots/{id}                one lot
POST  /lots/{id}/extend         move a lot's expiry later (Idempotency-Key)
GET   /transactions/{id}        a transaction with its entries
GET   /transactions?idempotency_key=K, ?external_ref=R&action=topup|addon, ?usage_id=U
                                the caller's tenant's transaction posted under that key or business id
GET   /assets, POST /assets     list or create assets (with their system accounts)
POST  /wallets/{id}/rules       create an automation rule on the wallet (auto_topup, low_balance,
                                recurring_allocation); GET: the wallet's rules that are not deleted
GET   /rules/{id}               one rule; DELETE /rules/{id}: delete it (kept, status deleted)
POST  /rules/{id}/pause, /rules/{id}/resume
                                pause a rule, or make it active (and armed) again

Deployed URLs may keep or drop the leading /wallets: /wallets/16 and /16 are one route.
An id that is not a positive int64 is a 400 (invalid_id), a method the path does not
take a 405 naming those it does, any other path a 404 (route_not_found).
"""

import functions_framework

from common import bootstrap
from common.errors import InvalidRequest
from common.http import (
    IDEMPOTENCY_HEADER,
    endpoint,
    json_object,
    json_response,
    outcome_response,
    parse,
    read_or_admin,
)
from common.routing import Routes

# Settled when the function starts: without a cursor key in Google Cloud, the instance
# stops here rather than at its first history read.
bootstrap.cursors()


def _bounded(request, name, default, minimum, maximum):
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not minimum <= int(raw) <= maximum:
        raise InvalidRequest(f"{name} is a whole number from {minimum} to {maximum}", code="validation_failed")
    return int(raw)


def _flag(request, name):
    raw = request.args.get(name, "false")
    if raw not in ("true", "false"):
        raise InvalidRequest(f"{name} is true or false", code="validation_failed")
    return raw == "true"


def _commands():
    """The command models, and pydantic with them, load with the first request that has
    a body or query to parse: a plain read starts without them (cold starts)."""
    from common.ledger import commands

    return commands


def create_wallet(service, request, caller):
    return json_response(
        201, {"wallet": service.create_wallet(caller, parse(_commands().CreateWallet, json_object(request)))}
    )


def list_wallets(service, request, caller):
    query = parse(_commands().WalletsQuery, request.args.to_dict())
    return json_response(200, {"wallets": service.list_wallets(caller, query.owner_id)})


def get_wallet(service, request, caller, wallet_id):
    return json_response(200, {"wallet": service.get_wallet(caller, wallet_id)})


def update_wallet(service, request, caller, wallet_id):
    command = parse(_commands().UpdateWallet, json_object(request))
    return json_response(200, {"wallet": service.update_wallet(caller, wallet_id, command)})


def history(service, request, caller, wallet_id):
    query = parse(_commands().HistoryQuery, request.args.to_dict())
    return json_response(200, service.history(caller, wallet_id, query))


def lots(service, request, caller, wallet_id):
    return json_response(200, service.lots(caller, wallet_id, _flag(request, "all")))


def rollup(service, request, caller, wallet_id):
    return json_response(200, service.rollup(caller, wallet_id))


def members(service, request, caller, wallet_id):
    after, limit = _bounded(request, "after", 0, 0, 2**63 - 1), _bounded(request, "limit", 100, 1, 500)
    return json_response(200, service.members(caller, wallet_id, after, limit))


def get_lot(service, request, caller, lot_id):
    return json_response(200, {"lot": service.get_lot(caller, lot_id)})


def extend_lot(service, request, caller, lot_id):
    command = parse(_commands().ExtendLot, json_object(request))
    return outcome_response(service.extend_lot(caller, lot_id, command, request.headers.get(IDEMPOTENCY_HEADER)))


def get_transaction(service, request, caller, transaction_id):
    return json_response(200, {"transaction": service.get_transaction(caller, transaction_id)})


def find_transaction(service, request, caller):
    lookup = parse(_commands().TransactionLookup, request.args.to_dict())
    return json_response(200, {"transaction": service.find_transaction(caller, lookup)})


def list_assets(service, request, caller):
    return json_response(200, {"assets": service.list_assets(caller)})


def create_asset(service, request, caller):
    return json_response(
        201, {"asset": service.create_asset(caller, parse(_commands().CreateAsset, json_object(request)))}
    )


def create_rule(service, request, caller, wallet_id):
    command = parse(_commands().CreateRule, json_object(request))
    return json_response(201, {"rule": service.create_rule(caller, wallet_id, command)})


def list_rules(service, request, caller, wallet_id):
    return json_response(200, {"rules": service.list_rules(caller, wallet_id)})


def get_rule(service, request, caller, rule_id):
    return json_response(200, {"rule": service.get_rule(caller, rule_id)})


def pause_rule(service, request, caller, rule_id):
    return json_response(200, {"rule": service.pause_rule(caller, rule_id)})


def resume_rule(service, request, caller, rule_id):
    return json_response(200, {"rule": service.resume_rule(caller, rule_id)})


def delete_rule(service, request, caller, rule_id):
    return json_response(200, {"rule": service.delete_rule(caller, rule_id)})


ROUTES = Routes(
    {
        "/": {"GET": list_wallets, "POST": create_wallet},
        "/<id:wallet_id>": {"GET": get_wallet, "PATCH": update_wallet},
        "/<id:wallet_id>/history": {"GET": history},
        "/<id:wallet_id>/lots": {"GET": lots},
        "/<id:wallet_id>/rollup": {"GET": rollup},
        "/<id:wallet_id>/members": {"GET": members},
        "/<id:wallet_id>/rules": {"GET": list_rules, "POST": create_rule},
        "/rules/<id:rule_id>": {"GET": get_rule, "DELETE": delete_rule},
        "/rules/<id:rule_id>/pause": {"POST": pause_rule},
        "/rules/<id:rule_id>/resume": {"POST": resume_rule},
        "/lots/<id:lot_id>": {"GET": get_lot},
        "/lots/<id:lot_id>/extend": {"POST": extend_lot},
        "/transactions": {"GET": find_transaction},
        "/transactions/<id:transaction_id>": {"GET": get_transaction},
        "/assets": {"GET": list_assets, "POST": create_asset},
    },
    prefix="wallets",
)


@functions_framework.http
@endpoint(action_class=read_or_admin)
def wallets(request, caller):
    handler, ids = ROUTES.match(request)
    return handler(bootstrap.service(), request, caller, **ids)
