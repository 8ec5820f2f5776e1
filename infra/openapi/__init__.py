"""The API contract: an OpenAPI 3.1 document of every HTTP function, kept in
docs/openapi.json. `python -m infra.openapi` writes it; `--check` only compares.

From the code: the HTTP functions (infra/functions.py), the wallets function's routes
(its ROUTES table), the request bodies and the history's query (the pydantic command
models' JSON Schema). Written here: what each operation does and answers
(operations.py), the answers' shapes, headers and errors (components.py), and each
error code's status and meaning (error_codes.py). tests/unit/test_openapi.py holds the
document to the code, both ways.

Each function is its own server. A path starts with its function's name: a money
function answers on any path, and the wallets function with or without its leading
/wallets, so `/topup` and `/wallets/16` reach the right function under its local base
URL as under its URL in Google Cloud, and no two functions share a path.

A development tool: no function imports it, and no bundle holds it.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from typing import Any

from infra.functions import FUNCTIONS_DIR, REPO, discover, http_functions
from infra.openapi.components import components
from infra.openapi.operations import ID, Operation, money_operation, ref, wallet_operations

DOCUMENT = REPO / "docs" / "openapi.json"
WALLETS = "wallets"  # the function with a routing table; every other HTTP function is one money action
LOCAL_PORT_BASE = 54300  # make dev's: emulators/stack.py gives functions base + 10 on, in name order


def build() -> dict[str, Any]:
    every = discover()
    ports = {name: LOCAL_PORT_BASE + 10 + index for index, name in enumerate(every)}
    functions = http_functions(every)
    paths: dict[str, Any] = {}
    for name in functions:
        if name != WALLETS:
            paths[f"/{name}"] = {
                "servers": servers(name, ports[name]),
                "post": operation(name, name, money_operation(name)),
            }
            continue
        operations = wallet_operations()
        for template, methods in wallet_routes().items():
            item = paths.setdefault(wallet_path(template), {"servers": servers(name, ports[name])})
            ids = re.findall(r"<id:(\w+)>", template)
            if ids:
                item["parameters"] = [{"name": id_, "in": "path", "required": True, "schema": ID} for id_ in ids]
            for method in methods:
                if (template, method) not in operations:
                    raise KeyError(f"{method} {template}: describe it in infra/openapi/operations.py")
                handler, op = operations[(template, method)]
                item[method.lower()] = operation(name, handler, op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Wallet ledger",
            "version": "1",
            "description": "Every HTTP function of the wallet ledger ([docs/api.md](api.md) tells more). Each "
            "function is its own server: a path starts with its function's name, and its `servers` give that "
            "function's base URL (locally `make dev`'s port; in Google Cloud its own URL, from `terraform output "
            "function_urls`). A money function answers on any path, so `/topup` is also `/`; the wallets function "
            "answers with or without its leading `/wallets`. Amounts and ids are JSON integers written "
            "without a fraction or an exponent: `10.0` and `1e3` are refused, though JSON Schema counts them "
            "as integers.",
        },
        "tags": [{"name": name, "description": docstring(name)} for name in functions],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": components(),
    }


def wallet_routes() -> dict[str, list[str]]:
    """The wallets function's ROUTES table: each path template with its methods."""
    spec = importlib.util.spec_from_file_location("wallets_main", FUNCTIONS_DIR / WALLETS / "main.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {template: list(handlers) for template, handlers in module.ROUTES.table.items()}


def wallet_path(template: str) -> str:
    """A route template as the document's path: the leading /wallets, ids in braces."""
    path = re.sub(r"<id:(\w+)>", r"{\1}", template)
    if "<" in path:
        raise ValueError(f"{template}: a converter this document does not describe")
    return "/" + WALLETS + path.rstrip("/")


def servers(function: str, port: int) -> list[dict[str, Any]]:
    return [
        {"url": f"http://127.0.0.1:{port}", "description": f"{function} on `make dev`'s stack"},
        {
            "url": "{function_url}",
            "description": f"{function} in Google Cloud",
            "variables": {
                "function_url": {
                    "default": f"https://{function.replace('_', '-')}-HASH-REGION.a.run.app",
                    "description": f'its URL: `terraform output -json function_urls`, "{function}"',
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
        "headers": {"Server-Timing": {"$ref": "#/components/headers/Server-Timing"}},
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
        result["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(op.body)}}}
    result["responses"] = {
        str(op.status): answer,
        **{str(status): {"$ref": f"#/components/responses/{status}"} for status in sorted(op.errors)},
    }
    return result


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
