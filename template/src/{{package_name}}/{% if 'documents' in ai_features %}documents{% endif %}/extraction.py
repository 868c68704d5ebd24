"""Text out of an upload: text files decode in place; PDFs go to a worker process with a time
limit (the parent kills it) and a memory limit (the worker caps its own address space)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import dataclass

import anyio
import structlog

from ..errors import ProblemError
from .uploads import PDF

logger = structlog.get_logger(__name__)
WORKER_MODULE = __name__.rpartition(".")[0] + ".worker"
MIB = 1024 * 1024


class DocumentUnreadable(ProblemError):
    status = 422
    code = "document_malformed"
    detail = "The document could not be read."


class DocumentEncrypted(DocumentUnreadable):
    code = "document_encrypted"
    detail = "Encrypted PDFs are not accepted; upload the document without a password."


class DocumentEmpty(DocumentUnreadable):
    code = "document_empty"
    detail = "The document contains no extractable text."


class DocumentTooComplex(DocumentUnreadable):
    code = "document_too_complex"
    detail = "Reading the document exceeded the time or memory limit."


REFUSALS: dict[str, type[DocumentUnreadable]] = {
    "encrypted": DocumentEncrypted,
    "malformed": DocumentUnreadable,
    "empty": DocumentEmpty,
    "too_complex": DocumentTooComplex,
}


@dataclass(frozen=True, slots=True)
class PdfExtractor:
    timeout_seconds: float
    memory_bytes: int
    limiter: anyio.CapacityLimiter

    @classmethod
    def create(cls, timeout_seconds: float, memory_mib: int, concurrency: int) -> PdfExtractor:
        return cls(timeout_seconds, memory_mib * MIB, anyio.CapacityLimiter(concurrency))

    async def pages(self, data: bytes) -> list[str]:
        """The text of each page, or a 422 problem that says why there is none."""
        command = [sys.executable, "-I", "-B", "-m", WORKER_MODULE, str(self.memory_bytes)]
        async with self.limiter:
            process = await anyio.open_process(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
            try:
                output = bytearray()
                with anyio.fail_after(self.timeout_seconds):
                    assert process.stdin is not None
                    assert process.stdout is not None
                    async with process.stdin:
                        # A worker that died early (its memory cap) closes the pipe: its
                        # missing answer below says what happened.
                        with contextlib.suppress(anyio.BrokenResourceError, OSError):
                            await process.stdin.send(data)
                    async for piece in process.stdout:
                        output += piece
                    await process.wait()
            except TimeoutError:
                logger.warning("pdf_extraction_killed", reason="timeout", pid=process.pid)
                raise DocumentTooComplex() from None
            finally:
                if process.returncode is None:
                    process.kill()
                    with anyio.CancelScope(shield=True):
                        await process.wait()
                await process.aclose()
        return _parse(process.returncode, bytes(output))


def _parse(returncode: int | None, output: bytes) -> list[str]:
    try:
        result = json.loads(output) if output else {}
    except ValueError:
        result = {}
    if isinstance(result.get("pages"), list) and returncode == 0:
        return [str(page) for page in result["pages"]]
    error = result.get("error")
    if error in REFUSALS:
        raise REFUSALS[error]()
    # No answer at all: the worker died, most likely at its memory limit.
    logger.warning("pdf_extraction_failed", returncode=returncode)
    raise DocumentTooComplex()


async def extract_pages(extractor: PdfExtractor, media_type: str, content: bytes) -> list[str]:
    if media_type == PDF:
        return await extractor.pages(content)
    text = content.decode("utf-8")
    if not text.strip():
        raise DocumentEmpty()
    return [text]
