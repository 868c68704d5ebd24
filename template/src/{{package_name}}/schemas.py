"""Shared schema bases: inputs refuse unknown fields and NUL characters, pages carry their
totals."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, field_validator

from .text import contains_nul, nul_error

T = TypeVar("T")

MAX_PAGE_SIZE = 100


class InputModel(BaseModel):
    """Every request body: an unknown field is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_nul(cls, value: object) -> object:
        """Every text field, nested lists and mappings included (see text.py)."""
        if contains_nul(value):
            raise nul_error()
        return value


class OutputModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(OutputModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class PageParams(BaseModel):
    limit: int
    offset: int


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)
