"""Request and response bodies of the role and permission endpoints."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints, field_validator

from ..schemas import InputModel, OutputModel

RoleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,63}$")]
PermissionName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$")]
Description = Annotated[str, Field(max_length=255)]


class PermissionOut(OutputModel):
    name: str
    description: str


class RoleOut(OutputModel):
    name: str
    description: str
    is_builtin: bool
    permissions: list[str]

    @field_validator("permissions", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        if isinstance(value, list):
            return [getattr(item, "name", item) for item in value]
        return value


class RoleCreate(InputModel):
    name: RoleName
    description: Description = ""
    permissions: Annotated[list[PermissionName], Field(max_length=200)] = Field(
        default_factory=list
    )


class RoleUpdate(InputModel):
    description: Description | None = None
    permissions: Annotated[list[PermissionName], Field(max_length=200)] | None = None
