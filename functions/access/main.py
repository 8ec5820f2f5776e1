"""HTTP function `access`: the operators' API for callers (principals, grants, roles),
dual control and the audit log. Every route needs grants admin over every wallet.

POST  /principals                   register a principal (a token's issuer and subject)
GET   /principals                   principals in id order (?after=&limit=)
GET   /principals/{id}              a principal with every grant it was given
PATCH /principals/{id}              status (active, disabled), description, rate-limit override
POST  /principals/{id}/grants       grant a role within a boundary; pending when it needs a second operator
POST  /grants/{id}/revoke           revoke a live grant
GET   /roles                        the roles with their scopes and rate limits
PATCH /roles/{name}                 a role's rate limits
GET   /changes                      changes waiting for a second operator (?status=&after=&limit=)
POST  /changes/{id}/approve         approve (and apply) another operator's change
POST  /changes/{id}/reject          reject another operator's change
GET   /audit                        the audit log in id order (?target=&after=&limit=)

Reads are charged to the caller's `read` rate limit, writes to its `admin` one.
Every write takes an optional "reason", kept in the audit log. Deployed URLs may keep
or drop the leading /access. Principal ids and role names are names (letters, digits
and ._:@-), grant and change ids positive integers; anything else is a 400 invalid_id.
"""

import functions_framework

from common import bootstrap
from common.http import endpoint, json_object, json_response, parse, read_or_admin
from common.routing import Routes


def _commands():
    """The request models, and pydantic with them, load with the first request that
    has a body or a query to parse."""
    from common.auth import commands

    return commands


def _reason(request):
    """A body that only gives a reason may be left out altogether."""
    empty = not request.content_length and "Transfer-Encoding" not in request.headers
    return parse(_commands().Decide, {} if empty else json_object(request))


def create_principal(service, request, caller):
    command = parse(_commands().CreatePrincipal, json_object(request))
    return json_response(201, {"principal": service.create_principal(caller, command)})


def list_principals(service, request, caller):
    return json_response(
        200, service.list_principals(caller, parse(_commands().PrincipalsQuery, request.args.to_dict()))
    )


def get_principal(service, request, caller, principal_id):
    return json_response(200, {"principal": service.get_principal(caller, principal_id)})


def update_principal(service, request, caller, principal_id):
    command = parse(_commands().UpdatePrincipal, json_object(request))
    return json_response(200, {"principal": service.update_principal(caller, principal_id, command)})


def grant_role(service, request, caller, principal_id):
    command = parse(_commands().GrantRole, json_object(request))
    return json_response(201, {"grant": service.grant_role(caller, principal_id, command)})


def revoke_grant(service, request, caller, grant_id):
    return json_response(200, {"grant": service.revoke_grant(caller, grant_id, _reason(request))})


def list_roles(service, request, caller):
    return json_response(200, {"roles": service.list_roles(caller)})


def set_role_limits(service, request, caller, role):
    command = parse(_commands().RoleLimits, json_object(request))
    return json_response(200, {"role": service.set_role_rate_limits(caller, role, command)})


def list_changes(service, request, caller):
    return json_response(200, service.list_changes(caller, parse(_commands().ChangesQuery, request.args.to_dict())))


def approve_change(service, request, caller, change_id):
    return json_response(200, {"change": service.decide_change(caller, change_id, True, _reason(request))})


def reject_change(service, request, caller, change_id):
    return json_response(200, {"change": service.decide_change(caller, change_id, False, _reason(request))})


def audit(service, request, caller):
    return json_response(200, service.audit(caller, parse(_commands().AuditQuery, request.args.to_dict())))


ROUTES = Routes(
    {
        "/principals": {"GET": list_principals, "POST": create_principal},
        "/principals/<name:principal_id>": {"GET": get_principal, "PATCH": update_principal},
        "/principals/<name:principal_id>/grants": {"POST": grant_role},
        "/grants/<id:grant_id>/revoke": {"POST": revoke_grant},
        "/roles": {"GET": list_roles},
        "/roles/<name:role>": {"PATCH": set_role_limits},
        "/changes": {"GET": list_changes},
        "/changes/<id:change_id>/approve": {"POST": approve_change},
        "/changes/<id:change_id>/reject": {"POST": reject_change},
        "/audit": {"GET": audit},
    },
    prefix="access",
)


@functions_framework.http
@endpoint(action_class=read_or_admin)  # managing callers is admin work, not money (docs/rate-limits.md)
def access(request, caller):
    handler, values = ROUTES.match(request)
    return handler(bootstrap.access_service(), request, caller, **values)
