"""The API document (docs/openapi.json) says what the code does, both ways: every HTTP
function, every route of the wallets function, the model each one parses and every
error code the code raises are in it, with the right status, and it has none the code
lacks. The checked-in file is what `python -m infra.openapi` writes now."""

import ast
import importlib.util
import inspect
import json
import re
from pathlib import Path

import pytest

from common import errors
from common.ledger import commands
from infra.functions import FUNCTIONS_DIR, discover, http_functions
from infra.openapi import DOCUMENT, build, render
from infra.openapi.error_codes import PENDING

REPO = Path(__file__).resolve().parents[2]
document = json.loads(DOCUMENT.read_text())
WALLETS_MAIN = FUNCTIONS_DIR / "wallets" / "main.py"


def operations():
    """(path, method): operation, for every operation of the document."""
    return {
        (path, method): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "patch", "put", "delete")
    }


def body_model(operation):
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    return schema["$ref"].rsplit("/", 1)[1] if schema else None


def query_names(operation):
    return {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}


def test_the_checked_in_document_is_what_the_generator_writes():
    assert DOCUMENT.read_text() == render(build()), "docs/openapi.json is out of date: run python -m infra.openapi"


def test_it_is_openapi_3_1_and_every_operation_needs_a_bearer_token():
    assert document["openapi"].startswith("3.1.")
    assert document["security"] == [{"bearer": []}]
    assert document["components"]["securitySchemes"]["bearer"] == {
        **document["components"]["securitySchemes"]["bearer"],
        **{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    }
    assert all("security" not in operation for operation in operations().values())  # none opts out


def test_every_http_function_has_its_paths_and_nothing_else_does():
    functions = set(http_functions(discover()))
    served = {path.split("/")[1] for path in document["paths"]}
    tagged = {operation["tags"][0] for operation in operations().values()}
    assert served == tagged == functions
    for path, item in document["paths"].items():
        assert item["servers"][0]["url"].startswith("http://127.0.0.1:"), path
        assert all(operation["tags"] == [path.split("/")[1]] for operation in operations_of(item))


def operations_of(item):
    return [operation for method, operation in item.items() if method in ("get", "post", "patch")]


def money_functions():
    """Each money function with the model its main.py hands to money_action."""
    found = {}
    for name in http_functions(discover()):
        for node in ast.walk(ast.parse((FUNCTIONS_DIR / name / "main.py").read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "money_action":
                found[name] = node.args[1].id
    return found


def test_each_money_function_is_one_post_of_the_model_it_parses():
    money = money_functions()
    assert set(money) == set(http_functions(discover())) - {"wallets"}
    for name, model in money.items():
        item = document["paths"][f"/{name}"]
        assert set(item) - {"servers"} == {"post"}
        assert body_model(item["post"]) == model
        assert any(p.get("$ref", "").endswith("/IdempotencyKey") for p in item["post"]["parameters"])


def wallet_handlers():
    """(document path, method): (the handler's name, the model it parses, the query model it parses)."""
    spec = importlib.util.spec_from_file_location("wallets_main_for_openapi", WALLETS_MAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = {}
    for template, handlers in module.ROUTES.table.items():
        path = "/wallets" + re.sub(r"<id:(\w+)>", r"{\1}", template).rstrip("/")
        for method, handler in handlers.items():
            source = inspect.getsource(handler)
            parsed = re.findall(r"parse\(_commands\(\)\.(\w+), (json_object|request\.args)", source)
            body = [model for model, where in parsed if where == "json_object"]
            query = [model for model, where in parsed if where != "json_object"]
            found[(path, method.lower())] = (handler.__name__, body[0] if body else None, query[0] if query else None)
    return found


def test_the_wallet_routes_are_the_documented_paths_with_their_models():
    documented = {key: operation for key, operation in operations().items() if key[0].startswith("/wallets")}
    handlers = wallet_handlers()
    assert set(documented) == set(handlers)
    for key, (handler, body, query) in handlers.items():
        operation = documented[key]
        assert operation["operationId"] == handler, key
        assert body_model(operation) == body, key
        if query is not None:
            fields = getattr(commands, query).model_fields
            assert query_names(operation) == {field.alias or name for name, field in fields.items()}, key


def test_every_request_model_is_a_model_the_code_parses():
    parsed = set(money_functions().values()) | {body for _, body, _ in wallet_handlers().values() if body}
    documented = {body_model(operation) for operation in operations().values()} - {None}
    assert documented == parsed
    for model in parsed:
        schema = getattr(commands, model).model_json_schema(ref_template="#/components/schemas/{model}")
        schema.pop("$defs", None)
        assert document["components"]["schemas"][model] == schema, model


def raised_codes():
    """code: status, for every error the code builds: a class of common/errors.py called
    with a literal code= (or none: the class's own), and every code the database raises."""
    classes = {
        name: value
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.LedgerError)
    }
    found = {code: cls.status for code, cls in errors.DATABASE_REFUSALS.items()}
    sources = sorted((REPO / "common").rglob("*.py")) + sorted((REPO / "functions").rglob("*.py"))
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in classes):
                continue
            cls = classes[node.func.id]
            code = next((keyword.value for keyword in node.keywords if keyword.arg == "code"), None)
            if code is None:
                found[cls.code] = cls.status
            elif isinstance(code, ast.Constant):
                found[code.value] = cls.status
            else:
                pytest.fail(f"{path}:{node.lineno}: a code this test cannot read; name it literally")
    return found


def documented_codes():
    """code: status, from the error responses of the document."""
    found = {}
    for status, response in document["components"]["responses"].items():
        schema = response["content"]["application/json"]["schema"]
        for option in schema["properties"]["error"]["properties"]["code"]["oneOf"]:
            assert option["const"] not in found, f"{option['const']} under two statuses"
            found[option["const"]] = int(status)
    return found


def test_every_error_code_the_code_raises_is_documented_with_its_status():
    raised, documented = raised_codes(), documented_codes()
    assert {code: documented.get(code) for code in raised} == raised


def test_the_document_has_no_error_code_the_code_lacks():
    # the codes of issue 13's authentication and rate limits may be documented first
    assert set(documented_codes()) - set(raised_codes()) <= PENDING


def test_each_error_status_carries_its_headers():
    responses = document["components"]["responses"]
    assert set(responses["401"]["headers"]) >= {"WWW-Authenticate"}
    assert set(responses["405"]["headers"]) >= {"Allow"}
    assert set(responses["429"]["headers"]) >= {
        "Retry-After",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
    }
    assert documented_codes()["body_too_large"] == 413 == errors.PayloadTooLarge.status
