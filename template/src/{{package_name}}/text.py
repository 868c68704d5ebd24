"""NUL characters are refused in every request body field and every query or path parameter.

No text the service stores or searches can hold one (PostgreSQL refuses it outright), so a NUL
is a 422 validation problem at the edge, on every database, instead of a driver error deep in
a query. JSON bodies are checked by `schemas.InputModel`, parameters and form fields by
`refuse_nul_parameters` (a dependency of every router with parameters: main.py), and
`openapi.py` declares the constraint on every free-text field.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.params import Form
from pydantic_core import PydanticCustomError

NUL = "\x00"
# The constraint as a JSON Schema pattern (ECMA-262 and Python both read `\x00`).
NO_NUL_PATTERN = r"^[^\x00]*$"
NUL_ERROR_TYPE = "string_contains_nul"
NUL_MESSAGE = "Text must not contain NUL characters"


def contains_nul(value: object) -> bool:
    """Whether `value`, or any string nested in its lists and mappings, holds a NUL."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, list | tuple | set | frozenset):
        return any(contains_nul(item) for item in value)
    if isinstance(value, Mapping):
        return any(contains_nul(key) or contains_nul(item) for key, item in value.items())
    return False


def nul_error() -> PydanticCustomError:
    return PydanticCustomError(NUL_ERROR_TYPE, NUL_MESSAGE)


async def refuse_nul_parameters(request: Request) -> None:
    """422 for a NUL in any query or path parameter of the matched route, or in a field of its
    form body (FastAPI has parsed the form already; the parsed form is reused)."""
    errors = [
        {"loc": ("query", name), "msg": NUL_MESSAGE, "type": NUL_ERROR_TYPE, "input": None}
        for name, value in request.query_params.multi_items()
        if NUL in name or NUL in value
    ]
    errors += [
        {"loc": ("path", name), "msg": NUL_MESSAGE, "type": NUL_ERROR_TYPE, "input": None}
        for name, value in request.path_params.items()
        if contains_nul(value)
    ]
    route = request.scope.get("route")
    body = getattr(route, "body_field", None)
    if body is not None and isinstance(body.field_info, Form):
        form = await request.form()
        errors += [
            {"loc": ("body", name), "msg": NUL_MESSAGE, "type": NUL_ERROR_TYPE, "input": None}
            for name, value in form.multi_items()
            if NUL in name or (isinstance(value, str) and NUL in value)
        ]
    if errors:
        raise RequestValidationError(errors)
