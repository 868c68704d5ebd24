"""PDFs built by the tests themselves, byte by byte: no binary fixtures."""

from __future__ import annotations

import io
import zlib


def _escape(text: str) -> bytes:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")


def page_content(*lines: str) -> bytes:
    """A content stream that shows `lines` in Helvetica, one under the other."""
    shown = b" ".join(b"(" + _escape(line) + b") Tj 0 -16 Td" for line in lines)
    return b"BT /F1 12 Tf 72 720 Td " + shown + b" ET"


def build_pdf(contents: list[bytes], *, compress: bool = False) -> bytes:
    """A valid PDF with one page per content stream and a correct cross-reference table."""
    kids = " ".join(f"{4 + 2 * index} 0 R" for index in range(len(contents)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(contents)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for index, content in enumerate(contents):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * index} 0 R >>".encode()
        )
        data = zlib.compress(content, 9) if compress else content
        flate = b" /Filter /FlateDecode" if compress else b""
        objects.append(b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(data), flate, data))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def text_pdf(*pages: str) -> bytes:
    return build_pdf([page_content(*page.split("\n")) for page in pages])


def encrypted_pdf(text: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf(text))))
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def slow_pdf(operations: int = 1_000_000) -> bytes:
    """About 30 KB on the wire, millions of text operators once inflated: extracting it takes
    far longer (and far more memory) than any limit a test sets."""
    body = b"BT /F1 12 Tf " + b"1 0 Td (x) Tj " * operations + b"ET"
    return build_pdf([body], compress=True)
