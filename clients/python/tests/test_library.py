"""Offline tests of nexus_lease: the local target checks (§7.1, §7.2), the intent (§6), the
signature profiles, window and nonce (§4.2-§4.5, §4.7), the keys (§4.4, §12.1), the
verification of signed Nexus refusals against forged ones (§10.4) and what is never shown.
Run: PYTHONPATH=clients/python python3 -m unittest discover -s clients/python/tests
"""

import base64
import json
import unittest
from email.message import Message
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from nexus_lease import LeaseKey, NexusError, ProtocolError, check_target, discover, sign_request
from nexus_lease.agent import (
    Agent,
    Jwks,
    Response,
    signature_profile,
    signs_relayed,
    signs_responses,
    verified_refusal,
    verified_relayed,
)
from nexus_lease.keys import b64url

LEASE = "eyJhbGciOiJFZERTQSJ9." + b64url(b'{"iat":1,"exp":901,"jti":"j"}') + ".c2ln"


def refusal(call):
    try:
        call()
    except NexusError as err:
        assert err.local
        return err.code
    return None


class TargetChecks(unittest.TestCase):
    def test_accepted(self):
        for service, path, query in [
            ("echo", "/a/b", None),
            ("echo", "", None),
            ("echo", "/", None),
            ("echo", "/a/", "x=1&y=%20"),
            ("my-api2", "/a%20b/%41~!$&'()*+,;=:@", ""),
        ]:
            with self.subTest(path=path):
                self.assertIsNone(refusal(lambda: check_target(service, path, query)))

    def test_service_names(self):
        for service in ["Echo", "v1", ".well-known", "-x", "a_b", "", "x" * 64, "echo\n"]:
            with self.subTest(service=service):
                self.assertEqual(refusal(lambda: check_target(service, "/")), "service_unknown")

    def test_path_rules(self):
        bad = [
            "a",  # not starting with /
            "/a b",  # rule 1: outside pchar
            "/\u00e9",
            "/a%2fb",  # rule 2: encoded / \ .
            "/a%2Fb",
            "/a%5cb",
            "/%2e%2e/v1/leases/renew",
            "/a%2Eb",
            "/a\\b",  # rule 3
            "/../v1/leases/renew",  # rule 4
            "/a/./b",
            "/a/..",
            "//a",  # rule 5
            "/a//b",
            "/a%00",  # rule 6
            "/a%1F",
            "/a%7f",
            "/a\x7f",
            "/a\n",
            "/a%",  # rule 7
            "/a%4",
            "/a%g1",
        ]
        for path in bad:
            with self.subTest(path=path):
                self.assertEqual(refusal(lambda: check_target("echo", path)), "path_invalid")

    def test_query_rules(self):
        for query in ["a b", "a#b", "\u00e9", "a\x01"]:
            with self.subTest(query=query):
                self.assertEqual(refusal(lambda: check_target("echo", "/", query)), "request_invalid")


class Signing(unittest.TestCase):
    def sign(self, **kw):
        args = dict(lease=LEASE, key=LeaseKey.generate(), created=1000)
        args.update(kw)
        return sign_request("get", "https://nexus.example/echo/a?b=1", **args)

    def test_intent(self):
        headers, _ = self.sign(intent='say "hi" \\ there')
        self.assertEqual(headers["Nexus-Intent"], '"say \\"hi\\" \\\\ there"')
        self.assertIsNone(refusal(lambda: self.sign(intent="x" * 512)))
        self.assertEqual(refusal(lambda: self.sign(intent="x" * 513)), "intent_invalid")
        self.assertEqual(refusal(lambda: self.sign(intent="caf\u00e9")), "intent_invalid")
        self.assertEqual(refusal(lambda: self.sign(intent="a\nb")), "intent_invalid")

    def test_profiles(self):
        _, base = self.sign()
        self.assertTrue(base.startswith('"@method": GET\n"@path": /echo/a\n"@query": ?b=1\n"workload'))
        _, base = sign_request("GET", "https://nexus.example/echo/a", lease=LEASE, key=LeaseKey.generate())
        self.assertIn('\n"@query": ?\n', base)  # covered even without a query (RFC 9421 §2.2.7)
        _, base = self.sign(profile="nexus/1")
        self.assertTrue(base.startswith('"@method": GET\n"@request-target": /echo/a?b=1\n"workload'))
        with self.assertRaises(ValueError):
            self.sign(profile="nexus/2")

    def test_profile_from_discovery(self):
        self.assertEqual(signature_profile({"signature_profiles": ["nexus/1.1", "nexus/1"]}), "nexus/1.1")
        self.assertEqual(signature_profile({"signature_profiles": ["nexus/1"]}), "nexus/1")
        self.assertEqual(signature_profile({}), "nexus/1")  # a node older than edition 1.1

    def test_components_and_params(self):
        headers, base = self.sign(profile="nexus/1")
        self.assertTrue(base.startswith('"@method": GET\n"@request-target": /echo/a?b=1\n'))
        self.assertIn(';expires=1030;nonce="', headers["Signature-Input"])
        self.assertTrue(headers["Signature-Input"].endswith('wimse-aud="https://nexus.example/echo/a"'))
        self.assertNotIn("Content-Digest", headers)
        headers, base = self.sign(body=b'{"a":1}', content_type="application/json")
        self.assertIn('"content-type" "content-digest");created=1000', headers["Signature-Input"])
        self.assertIn('"content-type": application/json\n', base)

    def test_window_never_outlives_the_lease(self):
        headers, _ = self.sign(lease_exp=1010)
        self.assertIn(";expires=1010;", headers["Signature-Input"])
        self.assertEqual(refusal(lambda: self.sign(lease_exp=1000)), "lease_expired")
        with self.assertRaises(ValueError):
            self.sign(expires=1061)

    def test_nonce_is_fresh_and_128_bits(self):
        nonces = {self.sign()[0]["Signature-Input"].split('nonce="')[1][:22] for _ in range(20)}
        self.assertEqual(len(nonces), 20)
        self.assertTrue(all(len(n) == 22 for n in nonces))

    def test_p256_signature_is_r_s(self):
        key = LeaseKey.generate("ES256")
        headers, base = self.sign(key=key)
        sig = base64.b64decode(headers["Signature"][len("wimse=:") : -1])
        self.assertEqual(len(sig), 64)
        jwk = key.public_jwk()
        x, y = (int.from_bytes(base64.urlsafe_b64decode(jwk[c] + "="), "big") for c in "xy")
        public = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        public.verify(der, base.encode(), ec.ECDSA(hashes.SHA256()))


VECTORS = Path(__file__).resolve().parents[3] / "vectors" / "nexus-1.1"


class StaticJwks(Jwks):
    """The Authority keys without a network: `later` is what a refetch would return."""

    def __init__(self, keys, later=None):
        super().__init__(None, 1.0, keys)
        self.later, self.fetches = later, 0

    def fetch(self):
        self.fetches += 1
        return self.later or []


class SignedRefusals(unittest.TestCase):
    """§10.4: with a node that signs its refusals, only a verified `Nexus-Error` counts."""

    def setUp(self):
        self.v = json.loads((VECTORS / "response-signed.json").read_text())
        self.keys = self.v["authority_jwks"]["keys"]

    def response(self, **changes):
        m = self.v["message"]
        headers = Message()
        for name, value in {**m["headers"], **changes}.items():
            if value is not None:
                headers[name] = value
        return Response(m["status"], headers, base64.b64decode(m["body_base64"]))

    def refusal(self, res, jwks, nonce=None):
        r = self.v["request"]
        return verified_refusal(res, r["method"], r["url"], nonce or r["nonce"], jwks, now=self.v["now"])

    def test_a_signed_refusal_is_nexus_word(self):
        err = self.refusal(self.response(), StaticJwks(self.keys))
        self.assertEqual((err.code, err.status, err.local), ("policy_denied", 403, False))
        self.assertEqual(err.request_id, "pq3Vd0h7Jc2Lr9Xa")

    def unverified(self, res, jwks=None, nonce=None):
        err = self.refusal(res, jwks or StaticJwks(self.keys), nonce)
        self.assertEqual((err.code, err.status), ("response_unverified", 502))
        return err

    def test_a_forged_refusal_is_not_acted_on(self):
        # An unsigned Nexus-Error, as an upstream or an on-path party would write it.
        self.unverified(self.response(**{"signature": None, "signature-input": None}))
        # A signed refusal whose code was changed (a forged signature_expired would make
        # the library re-sign and resend).
        self.unverified(self.response(**{"nexus-error": "signature_expired"}))
        # A genuine refusal replayed against another request.
        self.unverified(self.response(), nonce="AAAAAAAAAAAAAAAAAAAAAA")
        # Checked against a key that is not the one that signed (same kid, other material):
        # a signature that does not verify, and no refetch for a kid already known.
        impostor = [{**LeaseKey.generate().public_jwk(), "kid": k["kid"]} for k in self.keys]
        jwks = StaticJwks(impostor, later=self.keys)
        self.unverified(self.response(), jwks=jwks)
        self.assertEqual(jwks.fetches, 0)

    def test_an_unknown_kid_refetches_the_jwks_once(self):
        jwks = StaticJwks([], later=self.keys)
        self.assertEqual(self.refusal(self.response(), jwks).code, "policy_denied")
        self.assertEqual(jwks.fetches, 1)
        jwks = StaticJwks([], later=[])
        self.unverified(self.response(), jwks=jwks)
        self.assertEqual(jwks.fetches, 1)

    def test_without_signing_the_field_is_taken_as_is(self):
        res = self.response(**{"signature": None, "signature-input": None})
        self.assertEqual(self.refusal(res, None).code, "policy_denied")  # a node older than 1.1
        self.assertIsNone(self.refusal(self.response(**{"nexus-error": None}), StaticJwks(self.keys)))

    def test_signing_is_announced_by_discovery(self):
        announced = {"response_signature_tag": "nexus-response", "jwks_uri": "https://n/j"}
        self.assertTrue(signs_responses(announced))
        self.assertFalse(signs_responses({"jwks_uri": "https://n/j"}))


class SignedRelayedAnswers(unittest.TestCase):
    """§10.4: an upstream answer relayed by a node that signs them counts only if verified."""

    def setUp(self):
        self.v = json.loads((VECTORS / "relayed-signed.json").read_text())
        self.keys = self.v["authority_jwks"]["keys"]

    def answer(self, **changes):
        m = self.v["message"]
        headers = Message()
        for name, value in {**m["headers"], **changes}.items():
            if value is not None:
                headers[name] = value
        return Response(m["status"], headers, base64.b64decode(m["body_base64"]))

    def relayed(self, res, jwks, accept_unsigned=False, nonce=None):
        r = self.v["request"]
        return verified_relayed(
            res, r["method"], r["url"], nonce or r["nonce"], jwks, accept_unsigned, now=self.v["now"]
        )

    def unverified(self, *args, **kw):
        with self.assertRaises(NexusError) as caught:
            self.relayed(*args, **kw)
        self.assertEqual((caught.exception.code, caught.exception.status), ("response_unverified", 502))

    def test_a_signed_answer_is_returned(self):
        res = self.answer()
        self.assertIs(self.relayed(res, StaticJwks(self.keys)), res)

    def test_an_unsigned_or_rebound_answer_is_discarded(self):
        unsigned = self.answer(**{"signature": None, "signature-input": None, "nexus-origin": None})
        self.unverified(unsigned, StaticJwks(self.keys))
        # accept_unsigned counts only with a node that does not sign relayed answers.
        self.unverified(unsigned, StaticJwks(self.keys), accept_unsigned=True)
        self.unverified(self.answer(), StaticJwks(self.keys), nonce="AAAAAAAAAAAAAAAAAAAAAA")
        self.unverified(self.answer(**{"content-type": "text/html"}), StaticJwks(self.keys))

    def test_an_older_node_needs_the_opt_out(self):
        unsigned = self.answer(**{"signature": None, "signature-input": None})
        self.unverified(unsigned, None)
        self.assertIs(self.relayed(unsigned, None, accept_unsigned=True), unsigned)

    def test_relayed_signing_is_announced_by_discovery(self):
        base = {"response_signature_tag": "nexus-response", "jwks_uri": "https://n/j"}
        self.assertTrue(signs_relayed({**base, "signed_responses": ["refusal", "relayed"]}))
        self.assertFalse(signs_relayed(base))


class Secrets(unittest.TestCase):
    def test_public_jwk_has_no_private_member(self):
        self.assertEqual(set(LeaseKey.generate().public_jwk()), {"kty", "crv", "x", "alg"})
        self.assertEqual(set(LeaseKey.generate("ES256").public_jwk()), {"kty", "crv", "x", "y", "alg"})

    def test_repr_shows_no_lease_or_key(self):
        config = {"proxy_url": "https://nexus.example"}
        agent = Agent(config, LeaseKey.generate(), LEASE, "bot", 1.0)
        self.assertNotIn(LEASE.split(".")[1], repr(agent))
        self.assertEqual(repr(agent._key), "LeaseKey(EdDSA)")

    def test_no_plain_http_beyond_loopback(self):
        # Refused before any connection: 192.0.2.1 (TEST-NET-1) would otherwise time out.
        with self.assertRaises(ProtocolError):
            discover("http://192.0.2.1:7070", timeout=0.1)
        with self.assertRaises(ProtocolError):
            discover("http://127.evil.example:7070", timeout=0.1)
        with self.assertRaises(ProtocolError):
            Agent.enroll("ftp://nexus.example", "nxe_x")


if __name__ == "__main__":
    unittest.main()
