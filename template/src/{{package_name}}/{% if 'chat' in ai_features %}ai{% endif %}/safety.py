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
from dataclasses import dataclass
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
# The output filter is an allow-list of shapes, not a list of attacks. What passes unchanged:
# prose; inline code spans on one line and fenced code blocks at the margin (a renderer never
# links inside code); inline links and images of the strict form `[label](url)` / `![alt](url)`,
# autolinks `<url>` and bare URLs, where url is absolute http(s) to an allowed host with no
# title, escape, entity or trailing text. Everything else that a CommonMark/GFM renderer could
# turn into a link, image or HTML is neutralised: every other `[`, `]` and unpaired backtick is
# backslash-escaped (no reference definition, reference link or code span of the renderer's own
# can form), every `<` that could start a tag, comment or declaration becomes `&lt;`, every `&`
# that starts an entity becomes `&amp;` (nothing decodes into a URL), and any other URL form
# (`scheme:`, `scheme\:`, `scheme&#58;`, `//host`, `www.`) is replaced by LINK_REMOVED.
LINK_REMOVED = "(link removed)"  # no brackets: it must not become a link itself
_PATH = r"[A-Za-z0-9\-._~:/?#@!$&'*+,;=%]"
_HOST = r"[A-Za-z0-9.\-]+(?::[0-9]{1,5})?"
_TAIL = rf"(?:[/?#]{_PATH}*)?"
_STRICT_URL = re.compile(rf"https?://{_HOST}{_TAIL}", re.IGNORECASE)
_STRICT_BARE = re.compile(rf"(?:https?:|(?=//))//{_HOST}{_TAIL}|www\.{_HOST}{_TAIL}", re.IGNORECASE)
_STRICT_LINK = re.compile(rf"!?\[([^\[\]\\`<\n]*)\]\(({_STRICT_URL.pattern})\)", re.IGNORECASE)
_LINK_PREFIX = re.compile(rf"!?\[[^\[\]\\`<\n]*(?:\](?:\({_PATH}*)?)?", re.IGNORECASE)
_AUTOLINK = re.compile(rf"<({_STRICT_URL.pattern})>", re.IGNORECASE)
_URL_START = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9+.\-]{0,31}(?:\\?:|&\#0*58;?|&\#x0*3a;?|&colon;))?(?:\\?/){2}[^\s/\\]"
    r"|www\\?\.[^\s]",
    re.IGNORECASE,
)
_ENTITY = re.compile(r"&(?:\#[0-9]|\#[xX][0-9a-fA-F]|[A-Za-z][A-Za-z0-9]*;)")
_TAG_START = re.compile(r"<[A-Za-z/!?]")
_WHITESPACE = re.compile(r"\s")
# A linkifier may stop inside a URL (at `'`, say) and find another one after it.
_NESTED_URL = re.compile(r"//|www\.", re.IGNORECASE)
_TRAILING = re.compile(r"[)\]}>\"'.,;:!?*]*")  # what may end a kept bare URL's word
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


@dataclass
class _State:
    """Where a scan stands between two pieces: block context a later chunk must not lose."""

    line_start: bool = True
    fence: str = ""  # the opening fence of the code block we are in, if any
    fence_line: bool = False  # inside the block, in a line that cannot close it


class LinkPolicy:
    """Which URLs output may carry: absolute http(s) to an allowed host (or its subdomain)."""

    def __init__(self, allowed_hosts: Iterable[str]) -> None:
        self.allowed_hosts = frozenset(host.lower().rstrip(".") for host in allowed_hosts)

    def allows(self, url: str) -> bool:
        """Whether `url`, exactly as written (no entity, escape or whitespace), may be output."""
        if html.unescape(url) != url or not _STRICT_BARE.fullmatch(url):
            return False
        if url.startswith("//"):
            url = "https:" + url
        elif url[:4].lower() == "www.":
            url = "https://" + url
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

    def sanitize(self, text: str) -> str:
        """`text` reduced to the allowed shapes (see the comment above LINK_REMOVED)."""
        out, _ = self.scan(text, _State(), final=True)
        return out

    # ------------------------------------------------------------------ scanning
    def scan(self, text: str, state: _State, final: bool) -> tuple[str, int]:
        """Rewrite `text` piece by piece; return the output and how much of `text` it covers.

        Unless `final`, stop at the first piece whose fate more text could change: every piece
        returned is then exactly what the whole text would give (the scan never looks back).
        """
        out: list[str] = []
        index = 0
        while index < len(text):
            piece = self._piece(text, index, state, final)
            if piece is None:
                break
            index, rewritten = piece
            out.append(rewritten)
        return "".join(out), index

    def _piece(self, text: str, i: int, state: _State, final: bool) -> tuple[int, str] | None:
        if state.fence:
            return self._fenced(text, i, state, final)
        newline = text.find("\n", i)
        line_end = len(text) if newline < 0 else newline
        if text[i] == "\n":
            state.line_start = True
            return i + 1, "\n"
        if state.line_start and text[i] in "`~":
            if newline < 0 and not final:
                return None
            line = text[i:line_end]
            run = len(line) - len(line.lstrip(line[0]))
            if run >= 3 and not (line[0] == "`" and "`" in line[run:]):
                state.line_start, state.fence = False, line[:run]
                return line_end, line
        if not final and not _WHITESPACE.search(text, i):
            return None  # the last word: a URL or entity may still be growing
        state.line_start = False
        char = text[i]
        if _URL_START.match(text, i):
            return self._url(text, i)
        if char == "\\":
            if text[i + 1 : i + 2] in _ASCII_PUNCT:
                return i + 2, text[i : i + 2]
            return i + 1, char
        if char == "`":
            return self._code(text, i, line_end, newline >= 0 or final)
        if char == "[" or text.startswith("![", i):
            return self._link(text, i, final)
        if char == "]":
            return i + 1, "\\]"
        if text.startswith("~~~", i):  # no fence of the renderer's own (an indented one)
            return i + 1, "\\~"
        if char == "<":
            autolink = _AUTOLINK.match(text, i)
            if autolink and self.allows(autolink.group(1)):
                return autolink.end(), autolink.group(0)
            return i + 1, "&lt;" if _TAG_START.match(text, i) else char
        if char == "&" and _ENTITY.match(text, i):
            return i + 1, "&amp;"
        return i + 1, char

    def _url(self, text: str, i: int) -> tuple[int, str]:
        end = _WHITESPACE.search(text, i)
        word_end = len(text) if end is None else end.start()
        strict = _STRICT_BARE.match(text, i, word_end)
        if strict and self.allows(url := strict.group(0)):
            after_host = url.find("//") + 2 if "//" in url else 4  # past `www.`
            if _TRAILING.fullmatch(text, strict.end(), word_end) and not _NESTED_URL.search(
                url, after_host
            ):
                return strict.end(), url  # the punctuation after it is scanned next
        return word_end, LINK_REMOVED

    def _code(
        self, text: str, i: int, line_end: int, line_complete: bool
    ) -> tuple[int, str] | None:
        run = len(text[i:line_end]) - len(text[i:line_end].lstrip("`"))
        closer = re.compile(rf"(?<!`)`{{{run}}}(?!`)")
        found = closer.search(text, i + run, line_end)
        if found and found.end() == len(text) and not line_complete:
            return None  # one more backtick would make it a longer run
        if found and "|" not in text[i + run : found.start()]:
            return found.end(), text[i : found.end()]
        if not found and not line_complete:
            return None
        return i + run, "\\`" * run

    def _link(self, text: str, i: int, final: bool) -> tuple[int, str] | None:
        link = _STRICT_LINK.match(text, i)
        if link is None:
            prefix = _LINK_PREFIX.match(text, i)
            if not final and prefix and prefix.end() == len(text):
                return None
            return (i + 1, "!") if text[i] == "!" else (i + 1, "\\[")
        words, _ = self.scan(link.group(1), _State(line_start=False), final=True)
        if self.allows(link.group(2)):
            return link.end(), f"{text[i : text.index('[', i)]}[{words}]({link.group(2)})"
        if text[i] == "!":
            return link.end(), ""  # a foreign image goes, alt text and all
        return link.end(), words  # a foreign link keeps its words

    @staticmethod
    def _fenced(text: str, i: int, state: _State, final: bool) -> tuple[int, str] | None:
        newline = text.find("\n", i)
        if state.fence_line:
            end = len(text) if newline < 0 else newline + 1
            state.fence_line = newline < 0
            return end, text[i:end]
        line = text[i:] if newline < 0 else text[i:newline]
        mark = re.escape(state.fence[0])
        closing = re.fullmatch(rf" {{0,3}}{mark}{{{len(state.fence)},}}[ \t]*", line)
        could_close = re.fullmatch(rf" {{0,3}}{mark}*[ \t]*", line)
        if newline < 0 and not final:
            if could_close:
                return None
            state.fence_line = True
            return len(text), line
        if closing:
            state.fence = ""
        end = len(text) if newline < 0 else newline + 1
        state.line_start = True
        return end, text[i:end]


class StreamFilter:
    """`LinkPolicy.sanitize` over a stream: a piece that later chunks could still change is
    held back (at most `max_hold` characters), so a pattern split across chunks is judged
    whole and the result equals filtering the whole text. Past `max_hold`, the held piece is
    judged as it stands (escaped, or removed as a URL) and can no longer link."""

    def __init__(self, policy: LinkPolicy, max_hold: int = 2048) -> None:
        self.policy = policy
        self.max_hold = max_hold
        self._state = _State()
        self._pending = ""

    def feed(self, chunk: str) -> str:
        self._pending += chunk
        out: list[str] = []
        while True:
            ready, used = self.policy.scan(self._pending, self._state, final=False)
            out.append(ready)
            self._pending = self._pending[used:]
            if len(self._pending) <= self.max_hold:
                return "".join(out)
            out.append(self._force())

    def _force(self) -> str:
        """Judge the held text (part of one line) as if the answer ended there.

        What follows is then cut off by a space: nothing judged so far (an escape, an entity,
        a URL's scheme) can combine with it. A line that may open a code block has its first
        character escaped; one that may close it is ended and the block closed explicitly,
        and what follows is filtered as text.
        """
        state, text = self._state, self._pending
        self._pending = ""
        if state.fence:
            mark = re.escape(state.fence[0])
            closing = re.fullmatch(rf" {{0,3}}{mark}{{{len(state.fence)},}}[ \t]*", text)
            ended = f"{text}\n" if closing else f"{text}\n{state.fence}\n"
            state.fence, state.line_start = "", True
            return ended
        if state.line_start and text[0] in "`~":
            state.line_start = False
            self._pending = text[1:]
            return "\\" + text[0]
        ready, _ = self.policy.scan(text, state, final=True)
        return ready if text[-1].isspace() else ready + " "

    def flush(self) -> str:
        ready, _ = self.policy.scan(self._pending, self._state, final=True)
        self._pending = ""
        return ready
