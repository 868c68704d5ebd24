"""Structural prompt-injection defences: clean input, a screening tripwire, filtered output.

None of this makes a model obey; it narrows the channels. The system prompt is the server's,
history comes from the database, input loses the tokens and invisible characters that smuggle
instructions, and output cannot carry a link or image to a host outside the allow-list (a
rendered image is a zero-click exfiltration channel).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import urlsplit

# Chat-template control tokens of the common model families (ChatML, Llama 2/3, Gemma, ...).
_CONTROL_TOKENS = re.compile(
    r"<\|[^|<>\s]{1,40}\|>"  # <|im_start|>, <|eot_id|>, <|start_header_id|>, <|channel|> ...
    r"|\[/?INST\]|<</?SYS>>|</?s>|<(?:start|end)_of_turn>",
    re.IGNORECASE,
)
# Kept format characters: joiners that emoji and several scripts need.
_KEPT_FORMAT = frozenset({"\u200c", "\u200d"})

_INJECTION_PATTERNS = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.\n]{0,40}\b(?:instructions?|rules|prompts?)\b"
    r"|\b(?:reveal|print|show|repeat)\b[^.\n]{0,30}\bsystem\s+prompt\b"
    r"|\byou\s+are\s+now\b|\bdeveloper\s+mode\b|\bjailbreak",
    re.IGNORECASE,
)


def _invisible(char: str) -> bool:
    code = ord(char)
    if char in _KEPT_FORMAT:
        return False
    if 0xE0000 <= code <= 0xE007F or 0xE0100 <= code <= 0xE01EF:  # tags, variation selectors
        return True
    category = unicodedata.category(char)
    if category == "Cf":  # bidi controls, zero-width characters, BOM ...
        return True
    return category == "Cc" and char not in "\n\t"


def clean_input(text: str) -> str:
    """`text` without invisible characters or chat-template control tokens.

    Repeated until nothing changes: removing one may reveal another (`<|im_<|x|>start|>`).
    """
    while True:
        cleaned = _CONTROL_TOKENS.sub("", "".join(c for c in text if not _invisible(c)))
        if cleaned == text:
            return cleaned
        text = cleaned


def looks_like_injection(text: str) -> bool:
    """A tripwire for the crudest attempts; passing it proves nothing."""
    return bool(_INJECTION_PATTERNS.search(text))


# --------------------------------------------------------------------------- output
LINK_REMOVED = "[link removed]"
_BARE_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*)>")
# HTML elements a renderer may honour (any can load a URL through an attribute or a style),
# and custom elements (a hyphen in the name). `List<String>` in code is left alone.
_HTML_ELEMENTS = (
    "a|abbr|address|area|article|aside|audio|b|base|bdi|bdo|bgsound|blockquote|body|br|button|"
    "canvas|caption|center|cite|code|col|colgroup|data|datalist|dd|del|details|dfn|dialog|div|dl|"
    "dt|em|embed|fieldset|figcaption|figure|font|footer|form|frame|frameset|h[1-6]|head|header|"
    "hr|html|i|iframe|image|img|input|ins|isindex|kbd|label|legend|li|link|main|map|mark|"
    "marquee|math|menu|meta|meter|nav|noscript|object|ol|optgroup|option|output|p|param|"
    "picture|pre|progress|q|rp|rt|ruby|s|samp|script|section|select|slot|small|source|span|"
    "strike|strong|style|sub|summary|sup|svg|table|tbody|td|template|textarea|tfoot|th|thead|"
    "time|title|tr|track|tt|u|ul|use|var|video|wbr|xmp"
)
_HTML_TAG = re.compile(
    rf"<(?=/?(?:(?:{_HTML_ELEMENTS})(?![A-Za-z0-9-])|[A-Za-z][A-Za-z0-9]*-))", re.IGNORECASE
)
_TAG_START = re.compile(r"[A-Za-z/!?]")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]\n]+\]:[ \t]*(\S+).*$", re.MULTILINE)
_URL_SAFE = re.compile(r"[!-~]+")  # printable ASCII, no spaces
_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def _matching(text: str, start: int, opener: str, closer: str) -> int | None:
    """Index of the `closer` that balances the `opener` at `start`, skipping escapes."""
    depth = 0
    index = start
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == opener:
            depth += 1
        elif char == closer:
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return None


class LinkPolicy:
    """Which URLs output may carry: absolute http(s) to an allowed host (or its subdomain)."""

    def __init__(self, allowed_hosts: Iterable[str]) -> None:
        self.allowed_hosts = frozenset(host.lower().rstrip(".") for host in allowed_hosts)

    def allows(self, url: str) -> bool:
        # A renderer decodes entities and backslash escapes first; so does the check.
        url = _ESCAPED.sub(r"\1", html.unescape(url.strip().strip("<>")))
        if not _URL_SAFE.fullmatch(url) or "\\" in url:
            return False  # whitespace, controls, non-ASCII or backslashes: parsers disagree
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        if parts.scheme.lower() not in {"http", "https"} or "@" in parts.netloc:
            return False
        host = (parts.hostname or "").rstrip(".")
        return bool(host) and any(
            host == allowed or host.endswith("." + allowed) for allowed in self.allowed_hosts
        )

    # ------------------------------------------------------------------ rewriting
    def sanitize(self, text: str) -> str:
        """`text` with every link, image, autolink, bare URL and reference definition whose
        target is not allowed removed, and raw HTML escaped."""
        text = _REFERENCE.sub(lambda m: m.group(0) if self.allows(m.group(1)) else "", text)
        text = self._inline(text)
        text = _AUTOLINK.sub(
            lambda m: m.group(0) if self.allows(m.group(1)) else LINK_REMOVED, text
        )
        text = _HTML_TAG.sub("&lt;", text)
        return _BARE_URL.sub(
            lambda m: m.group(0) if self.allows(self._absolute(m.group(0))) else LINK_REMOVED, text
        )

    @staticmethod
    def _absolute(url: str) -> str:
        return url if "://" in url else "http://" + url

    def _inline(self, text: str) -> str:
        """Rewrite `[text](url)` and `![alt](url)`, innermost first, until none is left."""
        out: list[str] = []
        index = 0
        while index < len(text):
            start = text.find("[", index)
            if start < 0:
                break
            close = _matching(text, start, "[", "]")
            if close is None or close + 1 >= len(text) or text[close + 1] != "(":
                out.append(text[index : start + 1])
                index = start + 1
                continue
            end = _matching(text, close + 1, "(", ")")
            if end is None:
                out.append(text[index : start + 1])
                index = start + 1
                continue
            image = start > 0 and text[start - 1] == "!"
            label = self._inline(text[start + 1 : close])
            target = text[close + 2 : end].strip()
            url = target.split()[0] if target else ""
            prefix = text[index : start - 1] if image else text[index:start]
            if self.allows(url):
                out.append(f"{prefix}{'!' if image else ''}[{label}]({target})")
            else:
                out.append(prefix if image else prefix + label)
            index = end + 1
        out.append(text[index:])
        return "".join(out)


def _unsettled_from(text: str) -> int:
    """Where the part of `text` that more input could still turn into a link begins."""
    settled_until = 0  # the end of the last complete construct: never cut inside one
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            opener = index - 1 if index > 0 and text[index - 1] == "!" else index
            close = _matching(text, index, "[", "]")
            if close is None or close + 1 >= len(text):
                return opener
            follower = text[close + 1]
            end: int | None = close + 1
            if follower in "([":
                end = _matching(text, close + 1, follower, {"(": ")", "[": "]"}[follower])
            elif follower == ":":
                newline = text.find("\n", close)
                end = None if newline < 0 else newline
            if end is None:
                return opener
            settled_until = max(settled_until, end + 1)
        elif char == "<" and _TAG_START.match(text[index + 1 : index + 2] or "a"):
            end = text.find(">", index)
            if end < 0:
                return index
            settled_until = max(settled_until, end + 1)
        index += 1
    # A bare URL ends at whitespace: hold the unfinished last word.
    last_space = max(text.rfind(c) for c in " \t\n")
    return min(len(text), max(last_space + 1, settled_until))


class StreamFilter:
    """`LinkPolicy.sanitize` over a stream: text that later chunks could still complete into
    a link is held back (at most `max_hold` characters), so a pattern split across chunks is
    judged whole. Past `max_hold`, the opening bracket is escaped and can no longer link."""

    def __init__(self, policy: LinkPolicy, max_hold: int = 2048) -> None:
        self.policy = policy
        self.max_hold = max_hold
        self._pending = ""

    def feed(self, chunk: str) -> str:
        self._pending += chunk
        while True:
            cut = _unsettled_from(self._pending)
            if len(self._pending) - cut <= self.max_hold:
                break
            opener = self._pending[cut]
            if opener in "[<!":
                escaped = {"[": "\\[", "<": "&lt;", "!": "\\!"}[opener]
                self._pending = self._pending[:cut] + escaped + self._pending[cut + 1 :]
                continue
            cut = len(self._pending)  # one endless word: a bare URL is judged as it stands
            break
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return self.policy.sanitize(ready)

    def flush(self) -> str:
        ready, self._pending = self._pending, ""
        return self.policy.sanitize(ready)
