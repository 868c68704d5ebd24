"""What an upload must be: a clean file name, a size within the limit, and bytes whose type
(read from the bytes, never from the client) is on the allow-list and agrees with the name."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

import puremagic

from ..errors import ProblemError
from ..paths import API_PREFIX
from .models import FILENAME_MAX_LENGTH

if TYPE_CHECKING:
    from ..config import Settings

UPLOAD_PATH = f"{API_PREFIX}/documents"
# The multipart envelope (boundaries, part headers) around the file itself.
MULTIPART_OVERHEAD_BYTES = 16 * 1024

PDF = "application/pdf"
TEXT = "text/plain"
MARKDOWN = "text/markdown"
MEDIA_TYPES = {".pdf": PDF, ".txt": TEXT, ".md": MARKDOWN, ".markdown": MARKDOWN}


class DocumentTooLarge(ProblemError):
    status = 413
    code = "document_too_large"
    detail = "The document exceeds the size limit."


class UnsupportedDocumentType(ProblemError):
    status = 415
    code = "document_type_unsupported"
    detail = "Only PDF (.pdf), plain text (.txt) and Markdown (.md) documents are accepted."


class DocumentTypeMismatch(ProblemError):
    status = 415
    code = "document_type_mismatch"
    detail = "The file's content does not match its extension."


class DocumentNotUtf8(ProblemError):
    status = 422
    code = "document_not_utf8"
    detail = "Text documents must be valid UTF-8."


class InvalidUpload(ProblemError):
    status = 422
    code = "upload_invalid"
    detail = "Send exactly one file in the multipart field `file`."


@dataclass(frozen=True, slots=True)
class CheckedUpload:
    filename: str
    media_type: str
    content: bytes


def upload_body_limit(settings: Settings) -> dict[str, int]:
    """The upload route's own streaming cap, in place of the app-wide body limit."""
    return {UPLOAD_PATH: settings.document_max_bytes + MULTIPART_OVERHEAD_BYTES}


def clean_filename(raw: str | None) -> str:
    """A display name only (never a path): the last path component, NFC, no control or
    format characters, no leading dots, at most 255 characters with the extension kept."""
    name = unicodedata.normalize("NFC", raw or "")
    name = PureWindowsPath(PurePosixPath(name).name).name  # drops `../`, `/` and `\` parts
    name = "".join(
        char for char in name if unicodedata.category(char)[0] not in {"C", "Z"} or char == " "
    )
    name = " ".join(name.split()).lstrip(".").strip()
    if not name:
        raise InvalidUpload("The file name is empty once unsafe characters are removed.")
    if len(name) > FILENAME_MAX_LENGTH:
        suffix = PurePosixPath(name).suffix[:16]
        name = name[: FILENAME_MAX_LENGTH - len(suffix)] + suffix
    return name


def _sniff(content: bytes) -> set[str]:
    """Extensions the magic-number library recognises in these bytes (empty: none)."""
    found: set[str] = set()
    for sample in {content[:8192], content[:8192].lstrip()} - {b""}:
        try:
            found.update(match.extension.lower() for match in puremagic.magic_string(sample))
        except puremagic.PureError:
            continue
    return found


def check_upload(raw_filename: str | None, content: bytes) -> CheckedUpload:
    filename = clean_filename(raw_filename)
    extension = PurePosixPath(filename).suffix.lower()
    media_type = MEDIA_TYPES.get(extension)
    if media_type is None:
        raise UnsupportedDocumentType()
    sniffed = _sniff(content)
    if media_type == PDF:
        if ".pdf" not in sniffed or not content.startswith(b"%PDF-"):
            raise DocumentTypeMismatch("The file is named .pdf but is not a PDF.")
    else:
        # Text has no magic number: anything the library recognises (HTML, XML, an executable,
        # an archive...) is not plain text, whatever its name says.
        if sniffed:
            raise DocumentTypeMismatch(
                f"The file is named {extension} but its content is {sorted(sniffed)[0]}."
            )
        try:
            text = content.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise DocumentNotUtf8() from None
        if "\x00" in text:
            raise DocumentNotUtf8("Text documents must not contain NUL characters.")
    return CheckedUpload(filename=filename, media_type=media_type, content=content)
