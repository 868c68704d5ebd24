"""Deterministic chunking: the same pages always give the same chunks, each with its page."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

CHUNK_CHARS = 1200
OVERLAP_CHARS = 200
_SPACE = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True, slots=True)
class Chunk:
    ordinal: int
    page: int  # 1-based; text files are one page
    text: str


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")
    lines = [_SPACE.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _windows(text: str, size: int, overlap: int) -> list[str]:
    """Slices of at most `size` characters, cut at whitespace when one is near the end,
    each starting `overlap` characters before the previous one ended."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            if cut > start + size // 2:
                end = cut
        piece = text[start:end].strip()
        if piece:
            pieces.append(piece)
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
        # Begin at a word boundary, not in the middle of a word.
        while start < end and not text[start - 1].isspace():
            start += 1
    return pieces


def chunk_pages(
    pages: list[str], size: int = CHUNK_CHARS, overlap: int = OVERLAP_CHARS
) -> list[Chunk]:
    chunks: list[Chunk] = []
    for number, page in enumerate(pages, start=1):
        for piece in _windows(normalize(page), size, overlap):
            chunks.append(Chunk(ordinal=len(chunks), page=number, text=piece))
    return chunks
