"""Routing for a function that serves several paths: Werkzeug's matcher (Flask loads it
anyway), with the ledger's own answers for a wrong id, a wrong method and no route.

Rules match paths only; each path names its own methods. Werkzeug's method matching
would fall through from a static path to an id path on a wrong method (PATCH /assets
would reach /<id>), let HEAD in wherever GET is, and list the allowed methods unordered,
where this API answers 405 with the path's own methods, in the order it declares them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import flask
from werkzeug.exceptions import NotFound as NoRule
from werkzeug.routing import BaseConverter, Map, Rule

from common.errors import InvalidRequest, NotFound
from common.http import path_segments, require_method

Handler = Callable[..., flask.Response]


class IdConverter(BaseConverter):
    """A row id: a positive int64 in ASCII digits. It takes any one segment, so that an
    id that can't exist is a 400 (`invalid_id`: the path is right, the id is not), not
    a 404 for a route that does not exist."""

    regex = "[^/]+"

    def to_python(self, value: str) -> int | InvalidRequest:
        if value.isascii() and value.isdigit() and 0 < int(value) < 2**63:
            return int(value)
        # Returned, not raised: Werkzeug converts before the method is checked, and a
        # wrong method is a 405 whatever the path's ids (Routes.match raises it after).
        return InvalidRequest(f"'{value}' is not an id", code="invalid_id")


class NameConverter(BaseConverter):
    """A named row's id (a principal's, a role's): ASCII letters, digits and ._:@-, at
    most 128, the shape their tables hold. Like IdConverter it takes any one segment,
    so that a name that can't exist is a 400 (`invalid_id`), not a missing route."""

    regex = "[^/]+"
    shape = re.compile(r"[A-Za-z0-9._:@-]{1,128}")

    def to_python(self, value: str) -> str | InvalidRequest:
        if self.shape.fullmatch(value):
            return value
        return InvalidRequest(f"'{value[:130]}' is not a name", code="invalid_id")


class Routes:
    """Paths (Werkzeug rule syntax, `<id:name>` for row ids, `<name:name>` for names),
    each with its handler per method.
    `prefix` is an optional first segment that deployed URLs may keep or drop."""

    def __init__(self, table: Mapping[str, Mapping[str, Handler]], prefix: str) -> None:
        self._handlers = table
        self._prefix = prefix
        self._map = Map(
            [Rule(template, endpoint=template) for template in table],
            converters={"id": IdConverter, "name": NameConverter},
        )

    @property
    def table(self) -> Mapping[str, Mapping[str, Handler]]:
        """Each path template with its handlers by method (infra/openapi documents them)."""
        return self._handlers

    @property
    def prefix(self) -> str:
        return self._prefix

    def match(self, request: flask.Request) -> tuple[Handler, Mapping[str, Any]]:
        """The handler for this request and the values its path holds (ids as ints)."""
        path = "/" + "/".join(path_segments(request, self._prefix))
        try:
            template, values = self._map.bind("").match(path, method=None)
        except NoRule:
            raise NotFound(f"no route for {request.path}", code="route_not_found") from None
        handlers = self._handlers[template]
        require_method(request, *handlers)
        for value in values.values():
            if isinstance(value, InvalidRequest):
                raise value
        return handlers[request.method], values
