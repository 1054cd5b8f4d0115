"""Runs the language-neutral conformance vectors (vectors/, spec §14) in Python.

For every vector: the verdict and code a verifier must give (RFC 9421 signatures, RFC 9530
digests, the Nexus profile of §3-§8 without replay), each `signature_base` rebuilt byte
for byte, and `resign` vectors signed again. For the Nexus `accept` vectors (both
signature profiles, §4.7) the library's own signer (`nexus_lease.sign_request`) is run with
the vector's inputs and must reproduce the signature base (and, for Ed25519, the signature
itself): the Agent class of §14.1. The `nexus-response` vectors (§10.4) are judged by the
library's own response verifier (`nexus_lease.response.verify_response`).

Usage: python run_vectors.py [VECTORS_DIR]. Prints `FAIL ...` per failure and, last, one
JSON line with the counts; exits 1 if any vector failed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import sys
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from nexus_lease import sfv
from nexus_lease import LeaseKey, NexusError, content_digest, sign_request
from nexus_lease.response import verify_relayed, verify_response

SUITES = ("rfc9421", "rfc9530", "wimse", "nexus", "nexus-1.1")
LEASE_SKEW, SIG_SKEW = 30, 5
TAG = "wimse-workload-to-workload"
# The covered set of each signature profile (§4.2), without the body components.
REQUIRED_COMPONENTS = {
    "nexus/1.1": ("@method", "@path", "@query", "workload-identity-token", "nexus-intent"),
    "nexus/1": ("@method", "@request-target", "workload-identity-token", "nexus-intent"),
}


class Refused(Exception):
    def __init__(self, code: str, why: str):
        super().__init__(f"{code}: {why}")
        self.code = code


def b64url_decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- messages and RFC 9421 components ---------------------------------------------------


class Message:
    def __init__(self, m: dict):
        self.method = m.get("method")
        self.url = m.get("url")
        self.status = m.get("status")
        h = m.get("headers", {})
        self.lines = [(k.lower(), v) for k, v in (h.items() if isinstance(h, dict) else h)]
        self.body = base64.b64decode(m.get("body_base64", ""))

    def field(self, name: str) -> list[str]:
        return [v for k, v in self.lines if k == name]

    def combined(self, name: str) -> str | None:
        values = self.field(name)
        return ", ".join(v.strip(" \t") for v in values) if values else None


def component_value(msg: Message, req: Message | None, name: str, params: dict) -> str:
    """RFC 9421 §2.1, §2.2: the value of one covered component."""
    if params.get("req"):
        if req is None:
            raise Refused("signature_invalid", ";req without a request")
        msg, params = req, {k: v for k, v in params.items() if k != "req"}
    if not name.startswith("@"):
        if set(params) - {"req"}:
            raise Refused("signature_invalid", "unsupported component parameter")
        value = msg.combined(name)
        if value is None:
            raise Refused("signature_invalid", f"covered field {name} is absent")
        return value
    if name == "@status":
        return str(msg.status)
    if msg.url is None:
        raise Refused("signature_invalid", f"{name} on a message without a target")
    u = urlsplit(msg.url)
    query = msg.url.split("?", 1)[1] if "?" in msg.url else None
    if name == "@method":
        return msg.method
    if name == "@target-uri":
        return msg.url
    if name == "@authority":
        host = u.hostname.lower()
        default = {"https": 443, "http": 80}.get(u.scheme)
        return host if u.port in (None, default) else f"{host}:{u.port}"
    if name == "@scheme":
        return u.scheme.lower()
    if name == "@path":
        return u.path or "/"
    if name == "@query":
        return "?" + (query or "")
    if name == "@request-target":
        return (u.path or "/") + (f"?{query}" if query is not None else "")
    if name == "@query-param":
        wanted = params.get("name")
        pairs = [p.split("=", 1) + [""] for p in (query or "").split("&") if p]
        found = [quote(unquote(v), safe="") for k, v, *_ in pairs if unquote(k) == wanted]
        if len(found) != 1:
            raise Refused("signature_invalid", "@query-param absent or repeated")
        return found[0]
    raise Refused("signature_invalid", f"unsupported derived component {name}")


def build_base(msg: Message, req: Message | None, items: list, params: dict) -> str:
    lines = []
    for name, cparams in items:
        if not isinstance(name, str) or isinstance(name, sfv.Token):
            raise Refused("signature_invalid", "component identifier is not a string")
        ident = sfv.serialize_bare(name) + sfv.serialize_params(cparams)
        lines.append(f"{ident}: {component_value(msg, req, name, cparams)}")
    lines.append('"@signature-params": ' + sfv.serialize_inner_list(items, params))
    return "\n".join(lines)


# -- keys and algorithms ----------------------------------------------------------------


def public_key(jwk: dict):
    kty = jwk.get("kty")
    if kty == "OKP" and jwk.get("crv") == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
    if kty == "EC" and jwk.get("crv") == "P-256":
        x, y = (int.from_bytes(b64url_decode(jwk[c]), "big") for c in ("x", "y"))
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    if kty == "RSA":
        n, e = (int.from_bytes(b64url_decode(jwk[c]), "big") for c in ("n", "e"))
        return rsa.RSAPublicNumbers(e, n).public_key()
    if kty == "oct":
        return b64url_decode(jwk["k"])
    raise ValueError("unsupported key")


def verify(alg: str, jwk: dict, data: bytes, sig: bytes) -> bool:
    try:
        key = public_key(jwk)
        if alg == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, data)
        elif alg in ("ecdsa-p256-sha256", "ES256") and isinstance(key, ec.EllipticCurvePublicKey):
            if len(sig) != 64:  # r || s, never DER (§4.4)
                return False
            r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
        elif alg == "rsa-pss-sha512" and isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, data, padding.PSS(padding.MGF1(hashes.SHA512()), 64), hashes.SHA512())
        elif alg == "rsa-v1_5-sha256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "hmac-sha256" and isinstance(key, bytes):
            return hmac.compare_digest(hmac.new(key, data, hashlib.sha256).digest(), sig)
        elif alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, data)
        else:
            return False
        return True
    except (InvalidSignature, ValueError, KeyError):
        return False


def resign(alg: str, private_jwk: dict, data: bytes) -> bytes:
    if alg == "hmac-sha256":
        return hmac.new(b64url_decode(private_jwk["k"]), data, hashlib.sha256).digest()
    if alg == "ed25519":
        return LeaseKey.from_jwk(private_jwk).sign(data)
    raise ValueError(f"{alg} is not deterministic")


# -- RFC 9530 Content-Digest (§5) -------------------------------------------------------


def check_digest(header: str, body: bytes) -> None:
    try:
        members = sfv.parse_dictionary(header)
    except sfv.SFError:
        raise Refused("digest_invalid", "Content-Digest does not parse")
    accepted = {k: v for k, (v, _) in members.items() if k in ("sha-256", "sha-512")}
    if not accepted or not all(isinstance(v, bytes) for v in accepted.values()):
        raise Refused("digest_invalid", "no sha-256 or sha-512 byte sequence")
    for alg, value in accepted.items():
        if value != hashlib.new(alg.replace("-", ""), body).digest():
            raise Refused("digest_mismatch", f"{alg} does not match the body")


# -- the three vector kinds -------------------------------------------------------------


def run_http_signature(v: dict) -> str:
    msg = Message(v["message"])
    req = Message(v["request"]) if v.get("request") else None
    try:
        inputs = sfv.parse_dictionary(msg.combined("signature-input") or "")
        sigs = sfv.parse_dictionary(msg.combined("signature") or "")
        items, params = inputs[v["label"]]
        sig = sigs[v["label"]][0]
    except (sfv.SFError, KeyError):
        raise Refused("signature_invalid", "no such signature label")
    base = build_base(msg, req, items, params)
    expected = v["expected"]
    if "signature_base" in expected and base != expected["signature_base"]:
        raise AssertionError("signature base differs")
    if not verify(v["algorithm"], v["key"], base.encode(), sig):
        raise Refused("signature_invalid", "the signature does not verify")
    if "now" in v and isinstance(params.get("expires"), int) and v["now"] > params["expires"]:
        raise Refused("signature_expired", "expired")
    if expected.get("resign") and resign(v["algorithm"], v["private_key"], base.encode()) != sig:
        raise AssertionError("re-signing gave another signature")
    return "verified" + (" + re-signed" if expected.get("resign") else "")


def run_content_digest(v: dict) -> str:
    body = base64.b64decode(v["body_base64"])
    check_digest(v["header"], body)
    alg = v.get("create_algorithm")
    if alg:
        created = content_digest(body) if alg == "sha-256" else None  # the library's signer
        if created is None:
            created = f"{alg}=:{base64.b64encode(hashlib.new(alg.replace('-', ''), body).digest()).decode()}:"
        if created != v["header"]:
            raise AssertionError("the created digest differs")
    return "verified" + (" + created" if alg else "")


def check_lease(token_lines: list[str], verifier: dict, now: int) -> dict:
    """§3 in the order of §8 step 3; returns the claims."""
    if not token_lines or token_lines == [""]:
        raise Refused("lease_missing", "no Workload-Identity-Token")
    if len(token_lines) > 1:
        raise Refused("request_invalid", "not one Workload-Identity-Token line")
    if not re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token_lines[0]):
        raise Refused("lease_invalid", "not a compact JWT")
    h64, p64, s64 = token_lines[0].split(".")
    try:
        header, claims = json.loads(b64url_decode(h64)), json.loads(b64url_decode(p64))
        signature = b64url_decode(s64)
    except ValueError:
        raise Refused("lease_invalid", "undecodable")
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Refused("lease_invalid", "not JSON objects")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ("wit+jwt", "application/wit+jwt"):
        raise Refused("lease_invalid", "typ")
    if header.get("alg") not in ("EdDSA", "ES256"):
        raise Refused("lease_invalid", "alg")
    keys = [k for k in verifier["authority_jwks"]["keys"] if k.get("kid") == header.get("kid")]
    if not isinstance(header.get("kid"), str) or len(keys) != 1:
        raise Refused("lease_invalid", "kid")
    key = keys[0]
    kind = {"EdDSA": ("OKP", "Ed25519"), "ES256": ("EC", "P-256")}[header["alg"]]
    if (key.get("kty"), key.get("crv")) != kind or not verify(
        header["alg"], key, f"{h64}.{p64}".encode(), signature
    ):
        raise Refused("lease_invalid", "JWS signature")
    if claims.get("iss") != verifier["issuer"]:
        raise Refused("lease_invalid", "iss")
    aud = claims.get("aud")
    if not (aud == verifier["audience"] or (isinstance(aud, list) and verifier["audience"] in aud)):
        raise Refused("lease_invalid", "aud")
    ints = all(isinstance(claims.get(c), int) and not isinstance(claims.get(c), bool) for c in ("iat", "nbf", "exp"))
    sub_ok = isinstance(claims.get("sub"), str) and re.fullmatch(
        r"nexus://[A-Za-z0-9.-]+(:[0-9]+)?/agent/[A-Za-z0-9._~-]{1,128}", claims["sub"]
    )
    act = claims.get("act")
    if not (
        ints
        and sub_ok
        and claims["exp"] > claims["nbf"]
        and isinstance(claims.get("jti"), str)
        and re.fullmatch(r"[A-Za-z0-9_-]{22,}", claims["jti"])
        and isinstance(claims.get("scope"), str)
        and isinstance(claims.get("cnf"), dict)
        and (act is None or (isinstance(act, dict) and isinstance(act.get("sub"), str)))
        and isinstance(claims.get("nexus_task", ""), str)
    ):
        raise Refused("lease_invalid", "claims")
    if now > claims["exp"] + LEASE_SKEW:
        raise Refused("lease_expired", "exp")
    if claims["nbf"] > now + LEASE_SKEW:
        raise Refused("lease_not_yet_valid", "nbf")
    jwk = claims["cnf"].get("jwk")
    shapes = {"EdDSA": {"kty": "OKP", "crv": "Ed25519"}, "ES256": {"kty": "EC", "crv": "P-256"}}
    private = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
    if not (
        isinstance(jwk, dict)
        and jwk.get("alg") in shapes
        and all(jwk.get(k) == v for k, v in shapes[jwk["alg"]].items())
        and isinstance(jwk.get("x"), str)
        and (jwk["alg"] == "EdDSA" or isinstance(jwk.get("y"), str))
        and not private & set(jwk)
    ):
        raise Refused("lease_invalid", "cnf")
    if claims["jti"] in verifier.get("revoked_jtis", []):
        raise Refused("lease_revoked", "revoked")
    return claims


def run_nexus(v: dict) -> str:
    msg = Message(v["input"])
    now, verifier = v["now"], v["verifier"]
    claims = check_lease(msg.field("workload-identity-token"), verifier, now)

    # Step 4: signature fields and parameters.
    if not msg.field("signature-input") or not msg.field("signature"):
        raise Refused("signature_missing", "no Signature or Signature-Input")
    try:
        inputs = sfv.parse_dictionary(msg.combined("signature-input"))
        sigs = sfv.parse_dictionary(msg.combined("signature"))
    except sfv.SFError:
        raise Refused("signature_invalid", "not a dictionary")
    if set(inputs) != set(sigs):
        raise Refused("signature_invalid", "a label in one field and not the other")
    # Selection by tag, never by label (§4.1 SIG-SELECT); other members are ignored.
    tagged = [
        label
        for label, (_, p) in inputs.items()
        if p.get("tag") == TAG and not isinstance(p.get("tag"), sfv.Token)
    ]
    if len(tagged) != 1:
        raise Refused("signature_invalid", "not exactly one member tagged " + TAG)
    items, params = inputs[tagged[0]]
    sig = sigs[tagged[0]][0]
    if not isinstance(items, list) or not isinstance(sig, bytes):
        raise Refused("signature_invalid", "wrong member types")
    if "keyid" in params or "alg" in params:
        raise Refused("signature_invalid", "keyid/alg present")
    created, expires, nonce, aud = (params.get(k) for k in ("created", "expires", "nonce", "wimse-aud"))
    if not (
        type(created) is int
        and type(expires) is int
        and type(nonce) is str
        and type(aud) is str
    ):
        raise Refused("signature_invalid", "required parameters")
    if len(nonce) < 16:
        raise Refused("signature_invalid", "nonce")
    plain = {name for name, p in items if type(name) is str and not p}
    # The profile follows from the covered set (§4.2 SIG-COVERED), then must be accepted.
    if {"@path", "@query"} <= plain:
        profile = "nexus/1.1"
    elif "@request-target" in plain:
        profile = "nexus/1"
    else:
        raise Refused("signature_invalid", "no covered target")
    if profile not in verifier.get("profiles", ["nexus/1.1", "nexus/1"]):
        raise Refused("signature_invalid", "profile not accepted")
    if profile == "nexus/1" and (list(inputs) != ["wimse"] or list(sigs) != ["wimse"]):
        raise Refused("signature_invalid", "nexus/1: not exactly one wimse member")
    if not set(REQUIRED_COMPONENTS[profile]) <= plain:
        raise Refused("signature_invalid", "covered set")
    body_covered = {"content-type", "content-digest"} <= plain
    if msg.field("content-digest") and not body_covered:
        raise Refused("signature_invalid", "body components not covered")
    intents = msg.field("nexus-intent")
    if not intents:
        raise Refused("intent_invalid", "no Nexus-Intent")
    if len(intents) > 1:
        raise Refused("request_invalid", "not one Nexus-Intent line")
    try:
        intent, intent_params = sfv.parse_item(intents[0])
    except sfv.SFError:
        raise Refused("intent_invalid", "not an sf-string")
    if type(intent) is not str or intent_params or len(intent) > 512:
        raise Refused("intent_invalid", "not an sf-string of at most 512")
    if aud != msg.url.split("?", 1)[0].split("#", 1)[0]:
        raise Refused("signature_invalid", "wimse-aud")

    # Step 5: window.
    if not (expires > created and expires - created <= 60):
        raise Refused("signature_invalid", "window")
    if created > now + SIG_SKEW:
        raise Refused("signature_invalid", "created in the future")
    if now > expires + SIG_SKEW:
        raise Refused("signature_expired", "expired")
    if expires > claims["exp"]:
        raise Refused("signature_invalid", "outlives the lease")

    # Step 6: the signature, with the algorithm of cnf.jwk only.
    base = build_base(msg, None, items, params)
    jwk = claims["cnf"]["jwk"]
    if not verify({"EdDSA": "ed25519", "ES256": "ecdsa-p256-sha256"}[jwk["alg"]], jwk, base.encode(), sig):
        raise Refused("signature_invalid", "does not verify")

    # Step 7: body.
    if msg.body:
        if not msg.field("content-digest"):
            raise Refused("digest_missing", "body without Content-Digest")
        if not body_covered:
            raise Refused("signature_invalid", "body components not covered")
    if msg.field("content-digest"):
        check_digest(msg.combined("content-digest"), msg.body)

    expected = v["expected"]
    if "signature_base" in expected and base != expected["signature_base"]:
        raise AssertionError("signature base differs")
    return "verified" + sign_again(msg, profile, items, params, intent, base, sig, jwk, tagged[0])


def sign_again(msg, profile, items, params, intent, base, sig, jwk, label) -> str:
    """Signer side (§14.1 Agent class): the library reproduces what a signer emits."""
    names = [name for name, _ in items]
    body_components = ["content-type", "content-digest"] if msg.body else []
    signer_list = list(REQUIRED_COMPONENTS[profile]) + body_components
    if label != "wimse" or len(msg.field("signature")) != 1:
        return ""  # another signer's layout (a second signature, another label)
    if names != signer_list or (msg.body and msg.combined("content-digest") != content_digest(msg.body)):
        return ""  # not what this signer emits (extra components, a sha-512 digest)
    headers, own_base = sign_request(
        msg.method,
        msg.url,
        lease=msg.field("workload-identity-token")[0],
        key=KEYS.get(json.dumps(jwk, sort_keys=True)) or LeaseKey.generate(jwk["alg"]),
        intent=intent,
        body=msg.body,
        content_type=msg.combined("content-type"),
        created=params["created"],
        expires=params["expires"],
        nonce=params["nonce"],
        profile=profile,
    )
    if own_base != base or headers["Signature-Input"] != msg.combined("signature-input"):
        raise AssertionError("the library's signer built another signature base")
    if json.dumps(jwk, sort_keys=True) not in KEYS:
        raise AssertionError("no private key in keys.json for this lease")
    if jwk["alg"] == "EdDSA" and headers["Signature"] != msg.combined("signature"):
        raise AssertionError("the library's Ed25519 signature differs")
    own_sig = base64.b64decode(headers["Signature"][len("wimse=:") : -1])
    if not verify("ecdsa-p256-sha256" if jwk["alg"] == "ES256" else "ed25519", jwk, base.encode(), own_sig):
        raise AssertionError("the library's signature does not verify")
    return " + re-signed by nexus_lease"


KEYS: dict[str, LeaseKey] = {}  # public cnf.jwk (as sorted JSON) -> the test key


def load_keys(folder: Path) -> None:
    for jwk in json.loads((folder / "keys.json").read_text()).values():
        if isinstance(jwk, dict) and "d" in jwk and jwk.get("kid", "").startswith(("alice", "bob")):
            key = LeaseKey.from_jwk(jwk)
            KEYS[json.dumps(key.public_jwk(), sort_keys=True)] = key


def run_response(v: dict) -> str:
    """A signed Nexus response (§10.4), verified by the library's own verifier."""
    msg, req = Message(v["message"]), v["request"]
    try:
        kid = verify_response(
            msg.status,
            msg.lines,
            msg.body,
            method=req["method"],
            url=req["url"],
            nonce=req.get("nonce"),
            keys=v["authority_jwks"]["keys"],
            now=v["now"],
        )
    except NexusError as err:
        raise Refused(err.code, str(err))
    return f"verified by nexus_lease (kid {kid})"


def run_relayed(v: dict) -> str:
    """A relayed upstream answer signed by Nexus (§10.4), verified by the library."""
    msg, req = Message(v["message"]), v["request"]
    try:
        kid = verify_relayed(
            msg.status,
            msg.lines,
            method=req["method"],
            url=req["url"],
            nonce=req["nonce"],
            keys=v["authority_jwks"]["keys"],
            now=v["now"],
        )
    except NexusError as err:
        raise Refused(err.code, str(err))
    return f"verified by nexus_lease (kid {kid})"


def run(v: dict) -> str:
    kind = v.get("kind", "nexus-request")
    return {
        "http-signature": run_http_signature,
        "content-digest": run_content_digest,
        "nexus-response": run_response,
        "nexus-relayed-response": run_relayed,
    }.get(kind, run_nexus)(v)


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3] / "vectors"
    load_keys(root / "nexus")
    counts = {"passed": 0, "failed": 0, "signer_reproduced": 0, "responses_verified": 0, "by_suite": {}}
    for suite in SUITES:
        for path in sorted((root / suite).glob("*.json")):
            v = json.loads(path.read_text())
            if "id" not in v or "expected" not in v:
                continue  # data (keys.json)
            expected = v["expected"]
            try:
                outcome, code = run(v), None
            except Refused as r:
                outcome, code = str(r), r.code
            except Exception as e:  # a wrong base, a re-sign mismatch, a runner bug
                outcome, code = f"error {type(e).__name__}: {e}", "error"
            ok = (expected["verdict"] == "accept" and code is None) or (
                expected["verdict"] == "reject" and code == expected.get("code")
            )
            tally = counts["by_suite"].setdefault(suite, {"passed": 0, "failed": 0})
            tally["passed" if ok else "failed"] += 1
            counts["passed" if ok else "failed"] += 1
            counts["signer_reproduced"] += "re-signed by nexus_lease" in outcome
            counts["responses_verified"] += ok and v.get("kind") == "nexus-response"
            if not ok:
                print(f"FAIL {suite}/{path.name} {v['id']}: expected {expected.get('code') or 'accept'}, got {outcome}")
    print(json.dumps(counts))
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
