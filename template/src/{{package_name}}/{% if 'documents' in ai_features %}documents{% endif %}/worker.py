"""The PDF extraction worker: a child process that reads a PDF on stdin and writes its pages'
text as JSON on stdout. It caps its own address space before touching the file, and the parent
kills it at the time limit, so a hostile PDF costs one short-lived process, never the service.

    python -m <package>.documents.worker <memory-limit-bytes>  < file.pdf
"""

from __future__ import annotations

import io
import json
import resource
import sys
from typing import Any

EXIT_OK = 0
EXIT_REFUSED = 3  # the document is encrypted, malformed or empty: the JSON says which


def _limit_memory(limit_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def extract(data: bytes) -> dict[str, Any]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PdfStreamError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            return {"error": "encrypted"}
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, PdfStreamError, ValueError, KeyError, TypeError, AttributeError):
        return {"error": "malformed"}
    if not any(text.strip() for text in pages):
        return {"error": "empty"}
    return {"pages": pages}


def main() -> int:
    _limit_memory(int(sys.argv[1]))
    data = sys.stdin.buffer.read()
    try:
        result = extract(data)
    except MemoryError:
        result = {"error": "too_complex"}
    sys.stdout.write(json.dumps(result))
    return EXIT_REFUSED if "error" in result else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
