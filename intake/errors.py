"""One error body for the whole intake API, and the `responses=` that describe it in the OpenAPI document.

Every refusal (401 to 503, raised by a handler, by FastAPI's validation, by the router or by the body-size
limit) answers `{"detail": "...", "errors": [...]}`: `detail` says why in a sentence, `errors` lists where a
validation failed and why. Neither ever carries a submitted value, since the bodies may hold health data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from email.message import Message
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

VALIDATION_DETAIL = "the request is not valid; see errors"
# A location part that is not a plain field name came from the request (an unknown key): not repeated.
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
UNNAMED_FIELD = "<unknown field>"
# Where a request's parts are (pydantic's first location part): FastAPI's words, never the client's.
LOCATION_KINDS = frozenset({"body", "query", "path", "header", "cookie"})
# pydantic error types whose message quotes what was sent; they get a fixed sentence instead.
QUOTING_TYPES = {
    "union_tag_invalid": "the tag does not match any of the expected tags",
    "union_tag_not_found": "the tag field is missing",
}


class FieldError(BaseModel):
    """Where a validation failed and why; never the value that was sent."""

    loc: list[str | int] = Field(description="path to the offending part, e.g. ['body', 'subject']")
    type: str = Field(description="pydantic error type, e.g. 'int_parsing'")
    msg: str = Field(description="human-readable reason")


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer of this API."""

    detail: str = Field(description="why the request was refused")
    errors: list[FieldError] = Field(default_factory=list, description="validation failures (422 only)")


# What each refusal means, in the words the OpenAPI document shows unless a route says more.
DESCRIPTIONS: dict[int, str] = {
    400: "The body could not be parsed (not UTF-8, or nested too deeply).",
    401: "Missing or invalid credentials.",
    403: "The token's role may not do this.",
    404: "No such resource.",
    408: "The body did not arrive within the body timeout; the connection is closed.",
    413: "Body larger than the limit (declared or chunked).",
    415: "The body is not application/json.",
    422: "The request is not valid; the reasons never echo submitted values.",
    429: "Too many failed authentications from this client; retry after `Retry-After` seconds.",
    431: "The request's headers are larger than the limit.",
    503: "A service the request needs (the Prefect server or a deployment) is not available.",
}


def error_responses(
    *codes: int, throttled: bool = True, **descriptions: str
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each code with the one error body and its description.

    A keyword named after a code makes its description specific: `e404="Unknown integration."`. A route
    whose credentials are throttled (intake/auth.py) answers 429 too: listed with every 401 unless
    `throttled=False` (a vendor's webhook signature is not a client's guess).
    """
    if 401 in codes and throttled and 429 not in codes:
        codes = (*codes, 429)
    return {
        code: {"model": ErrorBody, "description": descriptions.get(f"e{code}", DESCRIPTIONS[code])}
        for code in codes
    }


def error_json(status_code: int, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        status_code=status_code, content=ErrorBody(detail=detail).model_dump(), headers=headers
    )


def documented_names(document: Mapping[str, Any]) -> frozenset[str]:
    """Every field and parameter name the OpenAPI document declares: the names a location may repeat."""
    names: set[str] = set()

    def collect(node: Any) -> None:
        if isinstance(node, Mapping):
            properties = node.get("properties")
            if isinstance(properties, Mapping):
                names.update(str(name) for name in properties)
            if isinstance(node.get("name"), str) and node.get("in") in LOCATION_KINDS:
                names.add(node["name"])
            for child in node.values():
                collect(child)
        elif isinstance(node, list):
            for child in node:
                collect(child)

    collect(document)
    return frozenset(names)


def _location(loc: Any, known: frozenset[str]) -> list[str | int]:
    """A list index or a name the API declares; anything else (an unknown key, a key of a free-form
    mapping) is what a client typed and is replaced by a generic name."""
    parts = list(loc or ())
    return [
        p if isinstance(p, int) or (i == 0 and p in LOCATION_KINDS) or p in known else UNNAMED_FIELD
        for i, p in enumerate(parts)
    ]


def field_errors(exc: RequestValidationError, known: frozenset[str]) -> list[FieldError]:
    """Where and why, never what was sent: pydantic's `input` and `ctx` are dropped, a location names only
    fields the API declares (`known`), and a message that would quote the input is a fixed sentence."""
    return [
        FieldError(
            loc=_location(e.get("loc"), known),
            type=str(e.get("type", "")),
            msg=QUOTING_TYPES.get(str(e.get("type", "")), str(e.get("msg", ""))),
        )
        for e in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Route every refusal through the one error body."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_json(exc.status_code, str(exc.detail), headers=exc.headers)

    known: list[frozenset[str]] = []  # the document's names, collected at the first refusal

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        if not known:
            known.append(documented_names(app.openapi()))
        body = ErrorBody(detail=VALIDATION_DETAIL, errors=field_errors(exc, known[0]))
        return JSONResponse(status_code=422, content=body.model_dump())

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, __: Exception) -> JSONResponse:
        # Starlette still re-raises after this answer, so the server logs the traceback; the client sees
        # the one shape and nothing of the cause.
        return error_json(500, "internal error")


def is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    json_subtype = subtype == "json" or subtype.endswith("+json")
    return message.get_content_maintype() == "application" and json_subtype


async def require_json_body(request: Request) -> None:
    """A dependency for JSON routes: a body not declared as JSON is 415, rather than a confusing 422."""
    if await request.body() and not is_json(request.headers.get("content-type")):
        raise HTTPException(415, "the body must be application/json")


def error_bytes(detail: str, *errors: FieldError) -> bytes:
    """The error body as bytes, for the ASGI middlewares that answer before the app (intake/limits.py)."""
    return json.dumps(ErrorBody(detail=detail, errors=list(errors)).model_dump()).encode()


TOO_LARGE_BODY = error_bytes("request body too large")
BODY_TIMEOUT_BODY = error_bytes("the request body did not arrive in time")
HEAD_TOO_LARGE_BODY = error_bytes("request headers too large")
NON_FINITE_BODY = error_bytes(
    VALIDATION_DETAIL,
    FieldError(
        loc=["body"],
        type="json_invalid",
        msg="a number is not finite, or too large for a double; not accepted",
    ),
)
