"""Shortcuts for the documents tests: uploading and searching as a given user."""

from __future__ import annotations

from typing import Any

import httpx

from ..conftest import User


async def upload(
    user: User, filename: str, content: bytes, content_type: str = "application/octet-stream"
) -> httpx.Response:
    return await user.request(
        "POST", "/api/v1/documents", files={"file": (filename, content, content_type)}
    )


async def uploaded(user: User, filename: str, content: bytes) -> dict[str, Any]:
    response = await upload(user, filename, content)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def search(user: User, query: str, limit: int = 10) -> list[dict[str, Any]]:
    response = await user.request(
        "POST", "/api/v1/documents/search", json={"query": query, "limit": limit}
    )
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()["hits"]
    return hits


async def upload_raw(user: User, filename: bytes, content: bytes) -> httpx.Response:
    """An upload whose `filename` header bytes go out exactly as given (httpx would
    percent-encode control characters)."""
    body = (
        b"--xyzzy\r\n"
        b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n--xyzzy--\r\n"
    )
    return await user.request(
        "POST",
        "/api/v1/documents",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=xyzzy"},
    )
