"""Just enough RFC 8941 (Structured Field Values) to verify signatures (Nexus responses,
§10.4, and the conformance vectors): parse dictionaries, inner lists and items with
parameters; serialize an inner list again for `@signature-params` (RFC 9421 §2.3 takes the
serialized value, not the raw text).
"""

from __future__ import annotations

import base64
import re


class Token(str):
    """An sf-token (serialized bare), as opposed to an sf-string (quoted)."""


class SFError(ValueError):
    pass


class _Parser:
    def __init__(self, text: str):
        if not re.fullmatch(r"[\x20-\x7e]*", text):
            raise SFError("non-ASCII or control character")
        self.s, self.i = text.strip(" "), 0

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def take(self, ch: str) -> None:
        if self.peek() != ch:
            raise SFError(f"expected {ch!r} at {self.i}")
        self.i += 1

    def ows(self) -> None:
        while self.peek() in (" ", "\t") and self.peek():
            self.i += 1

    def done(self) -> None:
        if self.i != len(self.s):
            raise SFError("trailing characters")

    def key(self) -> str:
        m = re.compile(r"[a-z*][a-z0-9_\-.*]*").match(self.s, self.i)
        if not m:
            raise SFError("bad key")
        self.i = m.end()
        return m.group()

    def bare_item(self):
        c = self.peek()
        if c == '"':
            self.i += 1
            out = []
            while True:
                c = self.peek()
                if not c:
                    raise SFError("unterminated string")
                self.i += 1
                if c == "\\":
                    n = self.peek()
                    if n not in ('"', "\\"):
                        raise SFError("bad escape")
                    out.append(n)
                    self.i += 1
                elif c == '"':
                    return "".join(out)
                else:
                    out.append(c)
        if c == ":":
            m = re.compile(r":([A-Za-z0-9+/=]*):").match(self.s, self.i)
            if not m:
                raise SFError("bad byte sequence")
            self.i = m.end()
            return base64.b64decode(m.group(1), validate=True)
        if c == "?":
            m = re.compile(r"\?([01])").match(self.s, self.i)
            if not m:
                raise SFError("bad boolean")
            self.i = m.end()
            return m.group(1) == "1"
        m = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,3})?").match(self.s, self.i)
        if m:
            self.i = m.end()
            return float(m.group()) if m.group(1) else int(m.group())
        m = re.compile(r"[A-Za-z*][A-Za-z0-9:/!#$%&'*+\-.^_`|~]*").match(self.s, self.i)
        if m:
            self.i = m.end()
            return Token(m.group())
        raise SFError("bad item")

    def params(self) -> dict:
        out = {}
        while self.peek() == ";":
            self.i += 1
            while self.peek() == " ":
                self.i += 1
            k = self.key()
            v = True
            if self.peek() == "=":
                self.i += 1
                v = self.bare_item()
            out[k] = v
        return out

    def item_or_inner_list(self):
        if self.peek() == "(":
            self.i += 1
            items = []
            while True:
                while self.peek() == " ":
                    self.i += 1
                if self.peek() == ")":
                    self.i += 1
                    return items, self.params()
                items.append((self.bare_item(), self.params()))
                if self.peek() not in (" ", ")"):
                    raise SFError("bad inner list")
        return self.bare_item(), self.params()

    def dictionary(self) -> dict:
        out = {}
        while self.i < len(self.s):
            k = self.key()
            if self.peek() == "=":
                self.i += 1
                out[k] = self.item_or_inner_list()
            else:
                out[k] = (True, self.params())
            self.ows()
            if self.i >= len(self.s):
                break
            self.take(",")
            self.ows()
            if self.i >= len(self.s):
                raise SFError("trailing comma")
        return out


def parse_dictionary(text: str) -> dict:
    """{key: (value, params)}; value is a bare item or a list of (item, params)."""
    p = _Parser(text)
    d = p.dictionary()
    p.done()
    return d


def parse_item(text: str):
    p = _Parser(text)
    v = p.bare_item(), p.params()
    p.done()
    return v


def serialize_bare(v) -> str:
    if isinstance(v, bool):
        return "?1" if v else "?0"
    if isinstance(v, Token):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, bytes):
        return ":" + base64.b64encode(v).decode() + ":"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise SFError("cannot serialize")


def serialize_params(params: dict) -> str:
    return "".join(f";{k}" if v is True else f";{k}={serialize_bare(v)}" for k, v in params.items())


def serialize_inner_list(items: list, params: dict) -> str:
    inner = " ".join(serialize_bare(v) + serialize_params(p) for v, p in items)
    return f"({inner})" + serialize_params(params)
