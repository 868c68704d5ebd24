"""The permissions of the documents feature; migration `documents_0001` seeds them."""

from __future__ import annotations

from enum import StrEnum


class DocumentPerm(StrEnum):
    READ = "documents:read"
    WRITE = "documents:write"
