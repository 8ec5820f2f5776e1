"""The API contract: an OpenAPI 3.1 document of every HTTP function, kept in
docs/openapi.json. `python -m infra.openapi` writes it; `--check` only compares.

From the code: the HTTP functions (infra/functions.py), the routes of each function
with a ROUTES table (wallets, access), the request bodies and queries (the pydantic
models' JSON Schema), the local ports (emulators/stack.py). Written here: what each
operation does and answers (operations.py), the answers' shapes, headers, errors and
security scheme (components.py), and each error code's status and meaning
(error_codes.py). tests/unit/test_openapi.py holds the document to the code, both ways.

Each function is its own server. A path starts with its function's name: a money
function answers on `/` and its name alone, and a routed function with or without its leading name,
so `/topup`, `/wallets/16` and `/access/roles` reach the right function under its local
base URL as under its URL in Google Cloud, and no two functions share a path.

A development tool: no function imports it, and no bundle holds it.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from typing import Any

from emulators.stack import DEFAULT_PORT_BASE, Stack
from infra.functions import FUNCTIONS_DIR, REPO, discover, http_functions
from infra.openapi.components import components, success_headers
from infra.openapi.operations import ID, ROUTED, Operation, money_operation, ref

DOCUMENT = REPO / "docs" / "openapi.json"
# make dev's stack: its functions' ports follow emulators/stack.py
DEV_STACK = Stack("dev", port_base=DEFAULT_PORT_BASE["dev"])


def build() -> dict[str, Any]:
    ports = DEV_STACK.ports
    functions = http_functions(discover())
    paths: dict[str, Any] = {}
    for name in functions:
        routes = routes_of(name)
        if routes is None:
            paths[f"/{name}"] = {
                "servers": servers(name, ports[name]),
                "post": operation(name, name, money_operation(name)),
            }
            continue
        if name not in ROUTED:
            raise KeyError(f"{name}: describe its routes in infra/openapi/operations.py (ROUTED)")
        operations = ROUTED[name]()
        for template, methods in routes.items():
            item = paths.setdefault(routed_path(name, template), {"servers": servers(name, ports[name])})
            parameters = path_parameters(template)
            if parameters:
                item["parameters"] = parameters
            for method in methods:
                if (template, method) not in operations:
                    raise KeyError(f"{name}: {method} {template}: describe it in infra/openapi/operations.py")
                handler, op = operations[(template, method)]
                item[method.lower()] = operation(name, handler, op)
        described = set(operations) - {(template, method) for template, methods in routes.items() for method in methods}
        if described:
            raise KeyError(f"{name}: {sorted(described)} described in infra/openapi/operations.py, not routed")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Wallet ledger",
            "version": "1",
            "description": "Every HTTP function of the wallet ledger ([docs/api.md](api.md) tells more; the "
            "operators' `access` API: [docs/callers-and-grants.md](callers-and-grants.md)). Each function is its "
            "own server: a path starts with its function's name, and its `servers` give that function's base URL "
            "(locally `make dev`'s port; in Google Cloud its own URL, from `terraform output function_urls`). A "
            "money function answers on its own path only, `/topup` or `/`; the `wallets` and `access` functions "
            "answer with or without their leading `/wallets` and `/access`. Amounts and ids are JSON integers "
            "written without a fraction or an exponent: `10.0` and `1e3` are refused, though JSON Schema counts "
            "them as integers.",
        },
        "tags": [{"name": name, "description": docstring(name)} for name in functions],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": components(),
    }


def routes_of(function: str) -> dict[str, list[str]] | None:
    """A routed function's ROUTES table (each path template with its methods), or None
    for a function without one (a money action). main.py is read first, and imported
    only when it has the table."""
    main = FUNCTIONS_DIR / function / "main.py"
    assigned = {
        target.id
        for node in ast.parse(main.read_text()).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    if "ROUTES" not in assigned:
        return None
    spec = importlib.util.spec_from_file_location(f"{function}_main_for_openapi", main)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if module.ROUTES.prefix != function:
        raise ValueError(f"{function}: its ROUTES' prefix is {module.ROUTES.prefix!r}; paths start with the name")
    return {template: list(handlers) for template, handlers in module.ROUTES.table.items()}


def converters() -> dict[str, dict[str, Any]]:
    """A path converter of common/routing.py as a path parameter's schema."""
    from common.routing import NameConverter

    return {"id": ID, "name": {"type": "string", "pattern": f"^{NameConverter.shape.pattern}$"}}


def path_parameters(template: str) -> list[dict[str, Any]]:
    schemas = converters()
    parameters = []
    for converter, name in re.findall(r"<(\w+):(\w+)>", template):
        if converter not in schemas:
            raise ValueError(f"{template}: a converter this document does not describe")
        parameters.append({"name": name, "in": "path", "required": True, "schema": schemas[converter]})
    return parameters


def routed_path(function: str, template: str) -> str:
    """A route template as the document's path: the function's name first, values in braces."""
    path = re.sub(r"<\w+:(\w+)>", r"{\1}", template)
    if "<" in path:
        raise ValueError(f"{template}: a rule this document does not describe")
    return "/" + function + path.rstrip("/")


def servers(function: str, port: int) -> list[dict[str, Any]]:
    return [
        {"url": f"http://127.0.0.1:{port}", "description": f"{function} on `make dev`'s stack"},
        {
            "url": "{function_url}",
            "description": f"{function} in Google Cloud",
            "variables": {
                "function_url": {
                    "default": f"https://REGION-PROJECT.cloudfunctions.net/{function.replace('_', '-')}",
                    "description": f"its URL, the audience of its tokens: `terraform output -json function_urls`, "
                    f'"{function}"',
                }
            },
        },
    ]


def docstring(function: str) -> str:
    """The first paragraph of the function's main.py docstring."""
    source = (FUNCTIONS_DIR / function / "main.py").read_text()
    return (ast.get_docstring(ast.parse(source)) or "").split("\n\n")[0]


def operation(function: str, operation_id: str, op: Operation) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": "Created" if op.status == 201 else "OK",
        "headers": success_headers(),
        "content": {"application/json": {"schema": op.answer}},
    }
    parameters = list(op.query)
    if op.idempotent:
        parameters.append({"$ref": "#/components/parameters/IdempotencyKey"})
        answer["headers"]["Idempotent-Replayed"] = {"$ref": "#/components/headers/Idempotent-Replayed"}
    result: dict[str, Any] = {"tags": [function], "operationId": operation_id, "summary": op.summary}
    if parameters:
        result["parameters"] = parameters
    if op.body:
        result["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": ref(op.body)}},
        }
        if not op.body_required:
            result["requestBody"]["description"] = "may be left out altogether"
    result["responses"] = {
        str(op.status): answer,
        **{str(status): {"$ref": f"#/components/responses/{status}"} for status in sorted(op.errors)},
    }
    return result


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
