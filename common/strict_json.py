"""Strict JSON from outside the ledger (an HTTP body, a Pub/Sub message's data): one
value per key, a bounded nesting depth, a UTF-8 object at the top, and the typed
command it holds. Pure: the callers bound the size before they read, each as fits its
transport (common/http.py, common/messages.py)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeVar

from common.errors import InvalidRequest

if TYPE_CHECKING:  # pydantic loads with the first parsed command (cold starts)
    from pydantic import BaseModel
M = TypeVar("M", bound="BaseModel")

# No valid request nests more than a few levels (metadata is flat, rate limits go three
# deep). A limit far below Python's recursion limit keeps every recursive reader of the
# body after this one (pydantic, json.dumps of a stored answer) far from a RecursionError.
MAX_JSON_DEPTH = 32


class _RepeatedKey(ValueError):
    pass


def _one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are unique: with a repeated key the last value would win
    silently, and two readers of one body could disagree on what it asks."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _RepeatedKey(sorted({key for key, _ in pairs if sum(1 for k, _ in pairs if k == key) > 1}))
    return obj


def nesting_within(value: Any, limit: int) -> bool:
    """Whether no array or object in `value` sits more than `limit` levels deep (the
    top-level one is level 1). A walk with its own stack, so depth costs no recursion."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return False
        pending.extend((child, depth + 1) for child in children)
    return True


def loads_object(raw: bytes, what: str = "the body") -> dict[str, Any]:
    """`raw` as a JSON object, or InvalidRequest (`invalid_json`) naming `what` it read."""
    try:
        value = json.loads(raw, object_pairs_hook=_one_value_per_key)
    except _RepeatedKey as error:
        raise InvalidRequest(
            "a key appears twice in one JSON object", code="invalid_json", details={"keys": error.args[0]}
        ) from None
    except RecursionError:  # deeper than the parser itself goes: far over the limit
        raise _too_deep(what) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidRequest(f"{what} is not valid JSON", code="invalid_json") from error
    if not nesting_within(value, MAX_JSON_DEPTH):
        raise _too_deep(what)
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} must be a JSON object", code="invalid_json")
    return value


def _too_deep(what: str) -> InvalidRequest:
    return InvalidRequest(
        f"{what} nests arrays and objects more than {MAX_JSON_DEPTH} levels deep",
        code="invalid_json",
        details={"max_depth": MAX_JSON_DEPTH},
    )


def validated(model: type[M], data: Any) -> M:
    """`data` as `model`, or InvalidRequest (`validation_failed`) listing every problem."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = [
            {
                "field": ".".join(str(part) for part in problem["loc"]) or None,
                "message": problem["msg"],
                "type": problem["type"],
            }
            for problem in error.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise InvalidRequest("the request is invalid", code="validation_failed", details=problems) from error
