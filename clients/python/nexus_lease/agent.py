"""An agent: discovers the Authority (§11.1), enrolls (§12.1), renews (§12.2), signs every
call to the proxy (§4) and revokes its own lease when done (§12.3).

HTTP goes through `http.client` directly: no redirect is followed (a followed redirect
would carry the lease elsewhere) and no proxy environment variable is consulted.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlsplit

from .errors import NexusError, ProtocolError
from .keys import LeaseKey, b64url_decode
from .response import RESPONSE_TAG, UnknownKey, verify_relayed, verify_response
from .signing import check_target, sign_request

DISCOVERY_PATH = "/.well-known/nexus-configuration"
# Fields this library sets or that frame the body: a caller's copy is dropped, so that
# nothing unsigned can pose as a covered field (a stray Content-Digest would be one).
PROFILE_FIELDS = {
    "workload-identity-token",
    "signature",
    "signature-input",
    "nexus-intent",
    "content-type",
    "content-digest",
    "content-length",
    "transfer-encoding",
    "host",
}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: only "localhost" is taken as loopback
        return False


def _check_transport(url: str, allow_http: bool) -> None:
    """The lease and the enrollment token go over TLS except on loopback (§13.6)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and (allow_http or _is_loopback(parts.hostname or "")):
        return
    raise ProtocolError("Nexus is reached over https (plain http only on loopback)")


@dataclass
class Response:
    """What the proxy relayed from the upstream (or the Authority answered)."""

    status: int
    headers: Message
    body: bytes

    @property
    def request_id(self) -> str | None:
        return self.headers.get("Nexus-Request-Id")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


def _json_object(res: Response, status: int) -> dict | None:
    """The body as a JSON object if the status is `status`, else None."""
    try:
        value = res.json() if res.status == status else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _send(method: str, url: str, headers: dict[str, str], body: bytes, timeout: float) -> Response:
    parts = urlsplit(url)
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout)
    elif parts.scheme == "http":
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    else:
        raise ValueError("Nexus URLs are http or https")
    target = url[len(f"{parts.scheme}://{parts.netloc}") :] or "/"
    try:
        # skip_accept_encoding: we send no Accept-Encoding unless the caller does.
        conn.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body or method in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        res = conn.getresponse()
        return Response(res.status, res.msg, res.read())
    finally:
        conn.close()


def _refusal(res: Response) -> NexusError | None:
    """A Nexus refusal is marked by `Nexus-Error` (§10.1); the body gives detail only."""
    code = res.headers.get("Nexus-Error")
    if not code:
        return None
    detail = (_json_object(res, res.status) or {}).get("detail")
    return NexusError(code, res.status, detail if isinstance(detail, str) else "", res.request_id)


class Jwks:
    """The Authority's public keys (§11.2), for verifying signed Nexus responses (§10.4).

    Fetched at enrollment; fetched once more when a response names an unknown `kid` (a key
    rotated in since), at most once per response.
    """

    def __init__(self, uri: str | None, timeout: float, keys: list[dict] | None = None):
        self.uri, self.timeout = uri, timeout
        self.keys = keys if keys is not None else self.fetch()

    def fetch(self) -> list[dict]:
        if self.uri is None:
            return []
        try:
            res = _send("GET", self.uri, {"Accept": "application/json"}, b"", self.timeout)
        except OSError:
            return []  # unreachable: every signed refusal stays unverified until it is back
        keys = (_json_object(res, 200) or {}).get("keys")
        return [k for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []

    def refetch(self) -> None:
        self.keys = self.fetch() or self.keys


def verified_refusal(
    res: Response, method: str, url: str, nonce: str | None, jwks: Jwks | None, now: int | None = None
) -> NexusError | None:
    """The refusal `res` carries, if any. With a node that signs its refusals (`jwks` set),
    a `Nexus-Error` response counts only if its signature verifies and is bound to this
    request's `nonce` (§10.4); otherwise it is not Nexus's word, and the library does not
    act on the code it claims (no re-signing on a forged `signature_expired`):
    `response_unverified` (502).
    """
    refusal = _refusal(res)
    if refusal is None or jwks is None:
        return refusal

    def verify() -> None:
        verify_response(
            res.status,
            list(res.headers.items()),
            res.body,
            method=method,
            url=url,
            nonce=nonce,
            keys=jwks.keys,
            now=now,
        )

    try:
        try:
            verify()
        except UnknownKey:
            jwks.refetch()  # a key rotated in since enrollment: one fetch per response
            verify()
    except (NexusError, ValueError) as err:  # ValueError: a signature field it cannot read
        why = err.code if isinstance(err, NexusError) else "signature_invalid"
        return NexusError(
            "response_unverified",
            502,
            f"a refusal without a valid Nexus signature was ignored ({why})",
            res.request_id,
        )
    return refusal


def verified_relayed(
    res: Response,
    method: str,
    url: str,
    nonce: str,
    jwks: Jwks | None,
    accept_unsigned: bool,
    now: int | None = None,
) -> Response:
    """The upstream's answer `res`, once its Nexus signature verified (§10.4: `Nexus-Origin:
    upstream`, bound to `nonce`). `jwks` is None when the node does not announce signed
    relayed answers: then the answer is accepted only with `accept_unsigned` (an older node).
    Anything else raises `response_unverified` (502): not an answer to act on."""
    if jwks is None:
        if accept_unsigned:
            return res
        raise NexusError(
            "response_unverified",
            502,
            "the node does not sign relayed answers (accept_unsigned_responses is off)",
            None,
        )

    def verify() -> None:
        verify_relayed(
            res.status,
            list(res.headers.items()),
            method=method,
            url=url,
            nonce=nonce,
            keys=jwks.keys,
            now=now,
        )

    try:
        try:
            verify()
        except UnknownKey:
            jwks.refetch()
            verify()
    except (NexusError, ValueError) as err:
        why = err.code if isinstance(err, NexusError) else "signature_invalid"
        raise NexusError(
            "response_unverified", 502, f"an answer without a valid Nexus signature ({why})", None
        ) from err
    return res


def _claims(lease: str) -> dict:
    """The lease payload, read (not verified: the Authority's answer over TLS is trusted)."""
    try:
        claims = json.loads(b64url_decode(lease.split(".")[1]))
        if isinstance(claims.get("exp"), int) and isinstance(claims.get("iat"), int):
            return claims
    except (IndexError, ValueError):
        pass
    raise ProtocolError("the Authority returned something that is not a lease")


def discover(authority: str, timeout: float = 10.0, allow_http: bool = False) -> dict:
    """`GET /.well-known/nexus-configuration` (§11.1): endpoints and limits.

    `allow_http` permits plain http to a host other than loopback (a private network
    the operator trusts); by default only https or loopback is used.
    """
    _check_transport(authority, allow_http)
    res = _send("GET", authority.rstrip("/") + DISCOVERY_PATH, {"Accept": "application/json"}, b"", timeout)
    refusal = _refusal(res)
    if refusal:
        raise refusal
    config = _json_object(res, 200)
    if config is None or config.get("spec_version") != "nexus/1":
        raise ProtocolError("not a nexus/1 discovery document")
    endpoints = ("lease_endpoint", "renewal_endpoint", "revocation_endpoint", "jwks_uri")
    for member in ("issuer", "proxy_url", *endpoints):
        if member in ("revocation_endpoint", "jwks_uri") and member not in config:
            continue  # optional for this client: only revoke() and response checks need them
        if not isinstance(config.get(member), str):
            raise ProtocolError(f"the discovery document lacks {member}")
        _check_transport(config[member], allow_http)
    return config


def signature_profile(config: dict) -> str:
    """`nexus/1.1` when discovery lists it; `nexus/1` for an older node (§4.5 step 1, §4.7)."""
    profiles = config.get("signature_profiles")
    return "nexus/1.1" if isinstance(profiles, list) and "nexus/1.1" in profiles else "nexus/1"


def signs_responses(config: dict) -> bool:
    """The node signs its problem responses (§10.4, §11.1 `response_signature_tag`)."""
    return config.get("response_signature_tag") == RESPONSE_TAG and isinstance(config.get("jwks_uri"), str)


def signs_relayed(config: dict) -> bool:
    """The node also signs the upstream answers it relays (§10.4, `signed_responses`)."""
    listed = config.get("signed_responses")
    return signs_responses(config) and isinstance(listed, list) and "relayed" in listed


class Agent:
    """An enrolled agent. Create it with `Agent.enroll(...)`.

    Renews its lease itself, before a request, once less than a third of its lifetime
    remains (§12.2). Used as a context manager, it revokes its lease on exit (§12.3).
    """

    def __init__(
        self,
        config: dict,
        key: LeaseKey,
        lease: str,
        agent: str | None,
        timeout: float,
        jwks: Jwks | None = None,
        accept_unsigned_responses: bool = False,
    ):
        self.config = config
        self.proxy_url = config["proxy_url"].rstrip("/")
        self.name = agent
        self.timeout = timeout
        self.signature_profile = signature_profile(config)
        # Set when the node signs its refusals: then an unsigned one is never acted on.
        self._jwks = jwks if signs_responses(config) else None
        # An unsigned relayed answer is refused unless the node does not sign them and the
        # caller accepted that (an older node, §10.4).
        self._relayed_jwks = self._jwks if signs_relayed(config) else None
        self._accept_unsigned = accept_unsigned_responses
        self._key = key
        self._lock = threading.Lock()
        self._set_lease(lease)

    @classmethod
    def enroll(
        cls,
        authority: str,
        enrollment_token: str,
        *,
        algorithm: str = "EdDSA",
        timeout: float = 10.0,
        allow_http: bool = False,
        accept_unsigned_responses: bool = False,
    ) -> "Agent":
        """Generates a key in memory and exchanges the one-time token for a lease (§12.1).

        `accept_unsigned_responses` lets `request()` return unsigned answers from a node
        that does not announce signed relayed answers (older than edition 1.1); with a node
        that does, an unsigned answer is always `response_unverified`."""
        config = discover(authority, timeout, allow_http)
        if algorithm not in config.get("lease_algorithms", [algorithm]):
            raise ProtocolError(f"the Authority does not accept {algorithm} keys")
        key = LeaseKey.generate(algorithm)
        jwks = Jwks(config["jwks_uri"], timeout) if signs_responses(config) else None
        body = json.dumps({"enrollment_token": enrollment_token, "jwk": key.public_jwk()}).encode()
        res = _send(
            "POST",
            config["lease_endpoint"],
            {"Content-Type": "application/json", "Accept": "application/json"},
            body,
            timeout,
        )
        # The enrollment request is not signed: its refusal carries no wimse-req-nonce.
        refusal = verified_refusal(res, "POST", config["lease_endpoint"], None, jwks)
        if refusal:
            raise refusal
        granted = _json_object(res, 201)
        if granted is None or not isinstance(granted.get("lease"), str):
            raise ProtocolError(f"enrollment answered {res.status} without a lease")
        if isinstance(granted.get("proxy_url"), str):
            _check_transport(granted["proxy_url"], allow_http)
            config = {**config, "proxy_url": granted["proxy_url"]}
        return cls(
            config, key, granted["lease"], granted.get("agent"), timeout, jwks, accept_unsigned_responses
        )

    @classmethod
    def from_env(cls, **options) -> "Agent":
        """`enroll` with `nexus run`'s variables: the Authority URL from NEXUS_AUTHORITY and
        the token from NEXUS_ENROLLMENT_TOKEN, which is removed from the environment first,
        so that no child process inherits it (§13.7). Options as for `enroll`."""
        token = os.environ.pop("NEXUS_ENROLLMENT_TOKEN", None)
        authority = os.environ.get("NEXUS_AUTHORITY")
        if not token or not authority:
            raise ProtocolError("NEXUS_AUTHORITY and NEXUS_ENROLLMENT_TOKEN must both be set")
        return cls.enroll(authority, token, **options)

    # -- the lease ---------------------------------------------------------------------

    def _set_lease(self, lease: str) -> None:
        claims = _claims(lease)
        self.lease, self.lease_id = lease, claims.get("jti")
        self.expires_at, self._issued_at = claims["exp"], claims["iat"]

    @property
    def lease_claims(self) -> dict:
        return _claims(self.lease)

    def renew(self) -> None:
        """`POST /v1/leases/renew`, signed with the current lease (§12.2). Same key."""
        res = self._signed("POST", self.config["renewal_endpoint"], b"", None, "", {})
        granted = _json_object(res, 201)
        if granted is None or not isinstance(granted.get("lease"), str):
            raise ProtocolError(f"renewal answered {res.status} without a lease")
        self._set_lease(granted["lease"])

    def _renew_if_due(self) -> None:
        with self._lock:
            lifetime = self.expires_at - self._issued_at
            if self.expires_at - time.time() < lifetime / 3:
                self.renew()

    def revoke(self) -> None:
        """Ends this lease and its renewal chain (§12.3). Already revoked or expired is done."""
        endpoint = self.config.get("revocation_endpoint")
        if not endpoint:
            raise ProtocolError("the Authority publishes no revocation_endpoint")
        try:
            self._signed("POST", endpoint, b"", None, "", {})
        except NexusError as err:
            if err.code not in ("lease_revoked", "lease_expired"):
                raise

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *exc) -> None:
        self.revoke()

    # -- requests ----------------------------------------------------------------------

    def _signed(
        self,
        method: str,
        url: str,
        body: bytes,
        content_type: str | None,
        intent: str,
        headers: dict,
        relayed: bool = False,
    ) -> Response:
        max_body = self.config.get("max_body_bytes")
        if isinstance(max_body, int) and len(body) > max_body:
            raise NexusError("body_too_large", detail="the body exceeds max_body_bytes", local=True)
        # A refusal made before forwarding may be re-signed and sent again (§10.1): a proxy
        # that has just restarted refuses signatures created before its start.
        for attempt in range(2):
            nonce = secrets.token_urlsafe(16)  # 128 bits (§4.3); kept to check the answer's binding
            signed, _ = sign_request(
                method,
                url,
                lease=self.lease,
                key=self._key,
                intent=intent,
                body=body,
                content_type=content_type,
                lease_exp=self.expires_at,
                nonce=nonce,
                profile=self.signature_profile,
            )
            # Our profile fields replace any same-named field the caller set (§4.5 step 3).
            merged = {k: v for k, v in headers.items() if k.lower() not in PROFILE_FIELDS}
            res = _send(method.upper(), url, {**merged, **signed}, body, self.timeout)
            refusal = verified_refusal(res, method, url, nonce, self._jwks)
            if refusal is None and relayed:
                return verified_relayed(
                    res, method, url, nonce, self._relayed_jwks, self._accept_unsigned
                )
            if refusal is None:
                return res
            if refusal.code != "signature_expired" or attempt == 1:
                raise refusal
            time.sleep(1)
        raise AssertionError("unreachable")

    def request(
        self,
        method: str,
        service: str,
        path: str = "/",
        *,
        body: bytes | str | None = None,
        json_body=None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        intent: str = "",
    ) -> Response:
        """Calls `service` through the proxy: `path` may carry `?query`, as it is to be sent.

        Returns the upstream's answer, whatever its status; raises `NexusError` when Nexus
        itself refuses (its code in `.code`) or when the target is refused locally.
        """
        path, sep, query = path.partition("?")
        check_target(service, path, query if sep else None)
        headers = headers or {}
        if json_body is not None:
            body, content_type = json.dumps(json_body).encode(), content_type or "application/json"
        # A Content-Type given among the headers counts: it is signed with the body.
        content_type = content_type or next(
            (v for k, v in headers.items() if k.lower() == "content-type"), None
        )
        data = body.encode() if isinstance(body, str) else (body or b"")
        self._renew_if_due()
        url = f"{self.proxy_url}/{service}{path}{sep}{query}"
        return self._signed(method, url, data, content_type, intent, headers, relayed=True)

    def get(self, service: str, path: str = "/", **kw) -> Response:
        return self.request("GET", service, path, **kw)

    def post(self, service: str, path: str = "/", **kw) -> Response:
        return self.request("POST", service, path, **kw)

    def __repr__(self) -> str:  # the lease is a credential: never print it
        return f"Agent({self.name!r}, proxy_url={self.proxy_url!r})"
