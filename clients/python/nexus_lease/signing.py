"""The signer side of the wire: target checks (§7), Content-Digest (§5), Nexus-Intent (§6)
and the RFC 9421 signature in the Nexus/WIMSE profile (§4.5).

Pure functions: clock and nonce can be passed in, so the conformance vectors can replay a
signature byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from urllib.parse import urlsplit

from .errors import NexusError
from .keys import LeaseKey

TAG = "wimse-workload-to-workload"
# §4.7: nexus/1.1 covers `@path` `@query`; nexus/1 (deprecated) covers `@request-target`.
PROFILES = ("nexus/1.1", "nexus/1")
MAX_WINDOW = 60  # §4.3: expires - created <= 60
DEFAULT_WINDOW = 30  # the reference signer's window (§4.5 step 5)
MAX_INTENT = 512

SERVICE_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # used with fullmatch: `$` allows a final \n
RESERVED_SERVICES = ("v1", ".well-known")
# RFC 3986 pchar without pct-encoded (handled apart), plus "/".
PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")
PCT = re.compile(r"%(..)?", re.S)


def _local(code: str, detail: str) -> NexusError:
    return NexusError(code, detail=detail, local=True)


def check_target(service: str, path: str, query: str | None = None) -> None:
    """Refuses locally what the proxy would refuse (§7.1 ROUTE-CLIENT, §7.2 rules 1-7).

    Checks the service name and path exactly as given: no URL parser has resolved `..` or
    decoded `%2e` yet, so `/svc/../v1/leases/renew` cannot turn into an Authority call.
    """
    if not SERVICE_RE.fullmatch(service) or service in RESERVED_SERVICES:
        raise _local("service_unknown", "the service name is not a valid, unreserved name")
    if path and not path.startswith("/"):
        raise _local("path_invalid", "the path must be empty or start with /")
    if not PATH_CHARS.fullmatch(path):
        raise _local("path_invalid", "the path holds a character outside RFC 3986 pchar")
    for m in PCT.finditer(path):
        hexpair = m.group(1)
        if hexpair is None or not re.fullmatch(r"[0-9A-Fa-f]{2}", hexpair):
            raise _local("path_invalid", "a % in the path is not followed by two hex digits")
        value = int(hexpair, 16)
        if hexpair.upper() in ("2F", "5C", "2E") or value < 0x20 or value == 0x7F:
            raise _local("path_invalid", "the path percent-encodes /, \\, . or a control")
    segments = path.split("/")[1:]
    if any(s in (".", "..") for s in segments):
        raise _local("path_invalid", "the path has a . or .. segment")
    if "//" in path:
        raise _local("path_invalid", "the path has an empty segment")
    if query is not None and re.search(r"[\x00-\x20\x7f-\U0010ffff#]", query):
        raise _local("request_invalid", "the query holds a space, control, non-ASCII or #")


def sf_string(value: str) -> str:
    """RFC 8941 §4.1.6 sf-string: printable ASCII in quotes, `"` and `\\` escaped."""
    if not re.fullmatch(r"[\x20-\x7e]*", value):
        raise _local("intent_invalid", "an sf-string holds only printable ASCII")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def intent_field(intent: str) -> str:
    """The `Nexus-Intent` field value (§6): one sf-string of at most 512 characters."""
    if len(intent) > MAX_INTENT:
        raise _local("intent_invalid", "the intent is longer than 512 characters")
    return sf_string(intent)


def content_digest(body: bytes) -> str:
    """`Content-Digest` with `sha-256` (§5: signers emit sha-256)."""
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
    return f"sha-256=:{digest}:"


def signature_params(components: list[str], params: list[tuple[str, int | str]]) -> str:
    """Serializes the `@signature-params` inner list (RFC 9421 §2.3, RFC 8941 §4.1.1)."""
    inner = "(" + " ".join(sf_string(c) for c in components) + ")"
    return inner + "".join(
        f";{k}={v}" if isinstance(v, int) else f";{k}={sf_string(v)}" for k, v in params
    )


def signature_base(lines: list[tuple[str, str]], params: str) -> str:
    """RFC 9421 §2.5: `"name": value` per component, then `@signature-params`; LF, no LF at end."""
    return "\n".join([f'"{name}": {value}' for name, value in lines] + [f'"@signature-params": {params}'])


def sign_request(
    method: str,
    url: str,
    *,
    lease: str,
    key: LeaseKey,
    intent: str = "",
    body: bytes = b"",
    content_type: str | None = None,
    lease_exp: int | None = None,
    created: int | None = None,
    expires: int | None = None,
    nonce: str | None = None,
    window: int = DEFAULT_WINDOW,
    profile: str = "nexus/1.1",
) -> tuple[dict[str, str], str]:
    """Signs one request (§4.5); returns the header fields to send and the signature base.

    `url` is the absolute target at the proxy or Authority, exactly as it will be sent;
    `@path` and `@query` (or, for the deprecated `nexus/1` profile, `@request-target`) are
    its path and query, `wimse-aud` the URL without the query.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown signature profile {profile!r} (nexus/1.1 or nexus/1)")
    parts = urlsplit(url)
    if parts.fragment:
        raise _local("request_invalid", "a request target has no fragment")
    query = url.split("?", 1)[1] if "?" in url else None
    target = parts.path + (f"?{query}" if query is not None else "")
    aud = url.split("?", 1)[0]
    method = method.upper()

    headers = {"Workload-Identity-Token": lease, "Nexus-Intent": intent_field(intent)}
    if profile == "nexus/1.1":
        # RFC 9421 §2.2.7: `@query` is `?` alone without a query, and is covered even then.
        lines = [("@method", method), ("@path", parts.path or "/"), ("@query", f"?{query or ''}")]
    else:
        lines = [("@method", method), ("@request-target", target)]
    lines += [
        ("workload-identity-token", lease),
        ("nexus-intent", headers["Nexus-Intent"]),
    ]
    if body:
        headers["Content-Type"] = (content_type or "application/octet-stream").strip()
        headers["Content-Digest"] = content_digest(body)
        lines += [("content-type", headers["Content-Type"]), ("content-digest", headers["Content-Digest"])]

    created = int(time.time()) if created is None else created
    if expires is None:
        expires = created + min(window, MAX_WINDOW)
        if lease_exp is not None:
            expires = min(expires, lease_exp)  # a proof may not outlive its lease (§4.3)
    if expires <= created and lease_exp is not None and lease_exp <= created:
        # No proof may outlive its lease: past `exp` only a new enrollment helps.
        raise _local("lease_expired", "the lease has expired: enroll again")
    if not created < expires <= created + MAX_WINDOW:
        raise ValueError("expires must be after created and at most 60 s later")
    # 128 bits from the CSPRNG, 22 base64url characters (§4.3 asks for at least 96).
    nonce = secrets.token_urlsafe(16) if nonce is None else nonce
    params = signature_params(
        [name for name, _ in lines],
        [("created", created), ("expires", expires), ("nonce", nonce), ("tag", TAG), ("wimse-aud", aud)],
    )
    base = signature_base(lines, params)
    signature = base64.b64encode(key.sign(base.encode("ascii"))).decode("ascii")
    headers["Signature-Input"] = f"wimse={params}"
    headers["Signature"] = f"wimse=:{signature}:"
    return headers, base
