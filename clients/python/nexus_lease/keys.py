"""The lease key (spec §12.1, §4.4): generated in memory, never written anywhere.

Ed25519 (`EdDSA`) by default, P-256 (`ES256`) on request. The public half goes into the
enrollment request as a JWK; the private half only ever signs signature bases.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALGORITHMS = ("EdDSA", "ES256")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LeaseKey:
    """A private key that signs RFC 9421 signature bases with the algorithm of §4.4."""

    def __init__(self, private_key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        if isinstance(private_key, ed25519.Ed25519PrivateKey):
            self.alg = "EdDSA"
        elif isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(
            private_key.curve, ec.SECP256R1
        ):
            self.alg = "ES256"
        else:
            raise ValueError("a lease key is Ed25519 or P-256")
        self._key = private_key

    @classmethod
    def generate(cls, alg: str = "EdDSA") -> "LeaseKey":
        if alg == "EdDSA":
            return cls(ed25519.Ed25519PrivateKey.generate())
        if alg == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()))
        raise ValueError(f"unsupported lease key algorithm {alg!r} (EdDSA or ES256)")

    @classmethod
    def from_jwk(cls, jwk: dict) -> "LeaseKey":
        """Loads a private JWK (`d` present). For test vectors; agents generate their keys."""
        d = b64url_decode(jwk["d"])
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            return cls(ed25519.Ed25519PrivateKey.from_private_bytes(d))
        if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            return cls(ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256R1()))
        raise ValueError("a lease key JWK is OKP/Ed25519 or EC/P-256")

    def public_jwk(self) -> dict:
        """The public JWK sent at enrollment: only kty, crv, x, (y) and alg (§3.3, §12.1)."""
        public = self._key.public_key()
        if self.alg == "EdDSA":
            raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
            return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "alg": "EdDSA"}
        numbers = public.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
            "alg": "ES256",
        }

    def sign(self, data: bytes) -> bytes:
        """64 bytes: Ed25519, or ECDSA P-256/SHA-256 as `r || s` (never DER, §4.4)."""
        if self.alg == "EdDSA":
            return self._key.sign(data)
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def __repr__(self) -> str:  # never show key material
        return f"LeaseKey({self.alg})"
