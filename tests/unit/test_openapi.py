"""The API document (docs/openapi.json) says what the code does, both ways: every HTTP
function, every route of each routed function (wallets, access) with its path values,
the model each one parses and every error code the code raises are in it, with the
right status, and it has none the code lacks. The checked-in file is what
`python -m infra.openapi` writes now."""

import ast
import importlib
import importlib.util
import inspect
import json
import re
import textwrap
from pathlib import Path

import pytest

from common import errors
from common.routing import NameConverter
from emulators.stack import DEFAULT_PORT_BASE, Stack
from infra.functions import FUNCTIONS_DIR, discover, http_functions
from infra.openapi import DOCUMENT, build, render

REPO = Path(__file__).resolve().parents[2]
document = json.loads(DOCUMENT.read_text())
ROUTED = ("access", "wallets")  # the HTTP functions with a ROUTES table; every other is one money action


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
    ports = Stack("dev", port_base=DEFAULT_PORT_BASE["dev"]).ports
    for path, item in document["paths"].items():
        function = path.split("/")[1]
        assert item["servers"][0]["url"] == f"http://127.0.0.1:{ports[function]}", path  # make dev's port
        assert all(operation["tags"] == [function] for operation in operations_of(item))


def operations_of(item):
    return [operation for method, operation in item.items() if method in ("get", "post", "patch")]


def money_functions():
    """Each money function with the model its main.py hands to money_action
    (money_action(request, caller, Model, action)), and the module it imports it from."""
    found = {}
    for name in http_functions(discover()):
        tree = ast.parse((FUNCTIONS_DIR / name / "main.py").read_text())
        imported = {
            alias.asname or alias.name: node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "money_action":
                model = node.args[2].id
                found[name] = (model, importlib.import_module(imported[model]))
    return found


def test_each_money_function_is_one_post_of_the_model_it_parses():
    money = money_functions()
    assert set(money) == set(http_functions(discover())) - set(ROUTED)
    for name, (model, _) in money.items():
        item = document["paths"][f"/{name}"]
        assert set(item) - {"servers"} == {"post"}
        assert body_model(item["post"]) == model
        assert any(p.get("$ref", "").endswith("/IdempotencyKey") for p in item["post"]["parameters"])


def main_module(function):
    spec = importlib.util.spec_from_file_location(
        f"{function}_main_for_test_openapi", FUNCTIONS_DIR / function / "main.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parsed_models(module, handler):
    """(body model, whether the body may be left out, query model) that `handler` parses:
    its calls parse(_commands().Model, ...), or those of a function of its module it calls."""
    functions = [handler]
    tree = ast.parse(textwrap.dedent(inspect.getsource(handler)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            helper = getattr(module, node.func.id, None)
            if inspect.isfunction(helper) and helper.__module__ == module.__name__ and helper is not handler:
                functions.append(helper)
    body, optional, query = None, False, None
    for function in functions:
        for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(function)))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "parse"):
                continue
            model, data = node.args
            assert isinstance(model, ast.Attribute), f"{handler.__name__}: parse(_commands().Model, ...) only"
            if "request.args" in ast.unparse(data):
                query = model.attr
            else:
                body, optional = model.attr, isinstance(data, ast.IfExp)  # `{} if empty else json_object(...)`
    return body, optional, query


def routed_handlers():
    """(document path, method): (the handler's name, the model it parses, whether its body
    may be left out, the query model it parses, the module of those models), for every
    route of every function with a ROUTES table."""
    found = {}
    for function in ROUTED:
        module = main_module(function)
        assert module.ROUTES.prefix == function
        for template, handlers in module.ROUTES.table.items():
            path = f"/{function}" + re.sub(r"<\w+:(\w+)>", r"{\1}", template).rstrip("/")
            for method, handler in handlers.items():
                body, optional, query = parsed_models(module, handler)
                found[(path, method.lower())] = (handler.__name__, body, optional, query, module._commands())
    return found


def test_the_routed_functions_are_those_with_a_routes_table():
    has_table = {
        name for name in http_functions(discover()) if "ROUTES =" in (FUNCTIONS_DIR / name / "main.py").read_text()
    }
    assert has_table == set(ROUTED)


def test_the_routes_are_the_documented_paths_with_their_models():
    documented = {key: operation for key, operation in operations().items() if key[0].split("/")[1] in ROUTED}
    handlers = routed_handlers()
    assert set(documented) == set(handlers)
    for key, (handler, body, optional, query, models) in handlers.items():
        operation = documented[key]
        assert operation["operationId"] == handler, key
        assert body_model(operation) == body, key
        if body is not None:
            assert operation["requestBody"]["required"] is not optional, key
        if query is not None:
            fields = getattr(models, query).model_fields
            assert query_names(operation) == {field.alias or name for name, field in fields.items()}, key


def test_each_path_value_is_a_parameter_of_its_converter():
    id_schema = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    name_schema = {"type": "string", "pattern": f"^{NameConverter.shape.pattern}$"}
    for function in ROUTED:
        for template in main_module(function).ROUTES.table:
            path = f"/{function}" + re.sub(r"<\w+:(\w+)>", r"{\1}", template).rstrip("/")
            documented = {p["name"]: p for p in document["paths"][path].get("parameters", [])}
            values = re.findall(r"<(\w+):(\w+)>", template)
            assert set(documented) == {name for _, name in values}, path
            for converter, name in values:
                assert documented[name]["in"] == "path" and documented[name]["required"], path
                assert documented[name]["schema"] == {"id": id_schema, "name": name_schema}[converter], path


def request_model_classes():
    """name: class, for every model a function parses from a body."""
    found = {model: getattr(module, model) for model, module in money_functions().values()}
    for _, body, _, _, models in routed_handlers().values():
        if body:
            found[body] = getattr(models, body)
    return found


def test_every_request_model_is_a_model_the_code_parses():
    parsed = request_model_classes()
    documented = {body_model(operation) for operation in operations().values()} - {None}
    assert documented == set(parsed)
    for model, cls in parsed.items():
        schema = cls.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, part in schema.pop("$defs", {}).items():
            assert document["components"]["schemas"][name] == part, f"{model}: {name}"
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
    assert set(documented_codes()) - set(raised_codes()) == set()


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


def test_every_answer_names_its_request_and_every_success_the_callers_rate_limit():
    # common.http.endpoint: X-Request-Id on every answer, RateLimit-* with every success
    # of a limited request (and required on a 429, where the limit refused it)
    for key, operation in operations().items():
        successes = [status for status in operation["responses"] if status.startswith("2")]
        assert len(successes) == 1, key
        assert set(operation["responses"][successes[0]]["headers"]) >= {
            "Server-Timing",
            "X-Request-Id",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
        }, key
    for status, response in document["components"]["responses"].items():
        assert "X-Request-Id" in response["headers"], status
    headers = document["components"]["headers"]
    refused = document["components"]["responses"]["429"]["headers"].values()
    assert all((headers[h["$ref"].rsplit("/", 1)[1]] if "$ref" in h else h)["required"] for h in refused)
