"""Signed Nexus responses (spec §10.4): a problem response Nexus generates carries an
RFC 9421 signature by an Authority JWKS key, tagged `nexus-response` and bound to the
request it answers by `wimse-req-nonce`. With a node that signs them, a `Nexus-Error`
response is Nexus's word only if that signature verifies; anything else (an upstream or an
on-path party writing `Nexus-Error`) is never taken for a refusal.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from . import sfv
from .errors import NexusError
from .keys import b64url_decode

RESPONSE_TAG = "nexus-response"
RESPONSE_WINDOW = 60  # §10.4: expires = created + 60
SIG_SKEW = 5  # §1.2 default signature skew


class UnknownKey(NexusError):
    """`signature_invalid` because `keyid` names no key of the JWKS held: worth one refetch
    (a key rotated in since it was fetched, §11.2)."""


def _bad(code: str, detail: str) -> NexusError:
    return NexusError(code, detail=detail, local=True)


def _combined(headers: list[tuple[str, str]], name: str) -> str | None:
    """RFC 9421 §2.1: the field's lines, trimmed and joined with `, `; None if absent."""
    values = [v.strip(" \t") for k, v in headers if k.lower() == name]
    return ", ".join(values) if values else None


def required_components(headers: list[tuple[str, str]]) -> list[str]:
    """What a Nexus response signature must cover (§10.4), as `name` or `name;req`."""
    out = ["@status", "@method;req", "@path;req", "@query;req", "nexus-request-id"]
    if _combined(headers, "nexus-error") is not None:
        out.append("nexus-error")
    relayed = _combined(headers, "nexus-origin") is not None
    if relayed:
        out.append("nexus-origin")
    if _combined(headers, "content-digest") is not None:
        out += ["content-type", "content-digest"]
    elif relayed and _combined(headers, "content-type") is not None:
        out.append("content-type")
    return out


def verify_relayed(
    status: int,
    headers: list[tuple[str, str]],
    *,
    method: str,
    url: str,
    nonce: str,
    keys: list[dict],
    now: int | None = None,
    skew: int = SIG_SKEW,
) -> str:
    """Verifies the Nexus signature of an upstream answer the proxy relayed (§10.4): as
    `verify_response`, with `Nexus-Origin: upstream`, no `Nexus-Error`, and the body not
    covered (it is streamed). An upstream's own `Content-Digest` is not Nexus's and is left
    out. Returns the `kid`; raises NexusError (local) as `verify_response`."""
    origin = _combined(headers, "nexus-origin")
    if origin is None and _combined(headers, "signature") is None:
        raise _bad("signature_missing", "the answer carries no signature")
    if origin != "upstream" or _combined(headers, "nexus-error") is not None:
        raise _bad("signature_invalid", "not an answer relayed from the upstream")
    kept = [(k, v) for k, v in headers if k.lower() != "content-digest"]
    return verify_response(
        status, kept, b"", method=method, url=url, nonce=nonce, keys=keys, now=now, skew=skew
    )


def _public_key(jwk: dict):
    """An Authority JWK (§11.2): Ed25519 with alg EdDSA or P-256 with alg ES256; else None."""
    try:
        if jwk.get("alg") == "EdDSA" and (jwk.get("kty"), jwk.get("crv")) == ("OKP", "Ed25519"):
            return ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
        if jwk.get("alg") == "ES256" and (jwk.get("kty"), jwk.get("crv")) == ("EC", "P-256"):
            x, y = (int.from_bytes(b64url_decode(jwk[c]), "big") for c in ("x", "y"))
            return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except (KeyError, TypeError, ValueError):
        pass
    return None


def _verifies(key, data: bytes, sig: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, data)
            return True
        if isinstance(key, ec.EllipticCurvePublicKey) and len(sig) == 64:  # r || s, never DER
            r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
            return True
    except InvalidSignature:
        pass
    return False


def check_digest(header: str, body: bytes) -> None:
    """RFC 9530 `Content-Digest` (§5): sha-256 and sha-512 count, and all of them must match."""
    try:
        members = sfv.parse_dictionary(header)
    except sfv.SFError:
        raise _bad("digest_invalid", "Content-Digest does not parse")
    accepted = {k: v for k, (v, _) in members.items() if k in ("sha-256", "sha-512")}
    if not accepted or not all(isinstance(v, bytes) for v in accepted.values()):
        raise _bad("digest_invalid", "no sha-256 or sha-512 byte sequence")
    for alg, value in accepted.items():
        if not hmac.compare_digest(value, hashlib.new(alg.replace("-", ""), body).digest()):
            raise _bad("digest_mismatch", f"{alg} does not match the body")


def verify_response(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    method: str,
    url: str,
    nonce: str | None,
    keys: list[dict],
    now: int | None = None,
    skew: int = SIG_SKEW,
) -> str:
    """Verifies the Nexus signature of a response to `method url` signed with `nonce`
    (None for an unsigned request: enrollment). Returns the `kid` that signed it.

    Raises NexusError (local) `signature_missing`, `signature_invalid`, `signature_expired`,
    `digest_invalid` or `digest_mismatch`.
    """
    inputs_text, sigs_text = _combined(headers, "signature-input"), _combined(headers, "signature")
    if inputs_text is None or sigs_text is None:
        raise _bad("signature_missing", "the response carries no signature")
    try:
        inputs, sigs = sfv.parse_dictionary(inputs_text), sfv.parse_dictionary(sigs_text)
    except sfv.SFError:
        raise _bad("signature_invalid", "Signature or Signature-Input does not parse")
    # Selected by its tag, never by its label (RFC 9421 §7.2.5).
    tagged = [
        label
        for label, (items, params) in inputs.items()
        if isinstance(items, list)
        and params.get("tag") == RESPONSE_TAG
        and not isinstance(params.get("tag"), sfv.Token)
    ]
    if not tagged:
        raise _bad("signature_missing", "no signature tagged nexus-response")
    if len(tagged) > 1 or tagged[0] not in sigs or not isinstance(sigs[tagged[0]][0], bytes):
        raise _bad("signature_invalid", "not one usable nexus-response signature")
    items, params = inputs[tagged[0]]
    sig = sigs[tagged[0]][0]
    created, expires, kid = params.get("created"), params.get("expires"), params.get("keyid")
    if type(created) is not int or type(expires) is not int or type(kid) is not str:
        raise _bad("signature_invalid", "created, expires or keyid missing")
    # Bound to this request: a refusal recorded for another request cannot be replayed here.
    if params.get("wimse-req-nonce") != nonce:
        raise _bad("signature_invalid", "signed for another request")
    covered = {f"{name};req" if cparams.get("req") else name for name, cparams in items}
    if not set(required_components(headers)) <= covered:
        raise _bad("signature_invalid", "a required component is not covered")
    now = int(time.time()) if now is None else now
    if not (created < expires <= created + RESPONSE_WINDOW) or created > now + skew:
        raise _bad("signature_invalid", "the signature window is wrong")
    if now > expires + skew:
        raise _bad("signature_expired", "the response signature has expired")
    jwk = next((k for k in keys if isinstance(k, dict) and k.get("kid") == kid), None)
    key = _public_key(jwk) if jwk is not None else None
    if key is None:
        raise UnknownKey("signature_invalid", detail="keyid names no usable Authority key", local=True)
    base = _signature_base(status, headers, method, url, items, params)
    if not _verifies(key, base.encode("ascii", "replace"), sig):
        raise _bad("signature_invalid", "the response signature does not verify")
    digest = _combined(headers, "content-digest")
    if digest is not None:
        check_digest(digest, body)
    elif body:
        raise _bad("signature_invalid", "a body without Content-Digest")
    return kid


def _signature_base(status, headers, method, url, items, params) -> str:
    """RFC 9421 §2.5 over the response, `;req` components taken from the request sent."""
    parts = urlsplit(url)
    query = url.split("?", 1)[1] if "?" in url else ""
    derived = {
        "@status": str(status),
        "@method;req": method.upper(),
        "@path;req": parts.path or "/",
        "@query;req": f"?{query}",
    }
    lines = []
    for name, cparams in items:
        if not isinstance(name, str) or isinstance(name, sfv.Token):
            raise _bad("signature_invalid", "a component identifier is not a string")
        req = cparams.get("req") is True
        if set(cparams) - {"req"}:
            raise _bad("signature_invalid", "an unsupported component parameter")
        if name.startswith("@"):
            value = derived.get(f"{name};req" if req else name)
        else:
            value = None if req else _combined(headers, name)
        if value is None:
            raise _bad("signature_invalid", f"component {name} cannot be derived")
        lines.append(f"{sfv.serialize_bare(name)}{sfv.serialize_params(cparams)}: {value}")
    lines.append('"@signature-params": ' + sfv.serialize_inner_list(items, params))
    return "\n".join(lines)
