"""Offline tests of nexus_lease: the local target checks (§7.1, §7.2), the intent (§6), the
signature window and nonce (§4.3, §4.5), the keys (§4.4, §12.1) and what is never shown.
Run: PYTHONPATH=clients/python python3 -m unittest discover -s clients/python/tests
"""

import base64
import unittest

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from nexus_lease import LeaseKey, NexusError, ProtocolError, check_target, discover, sign_request
from nexus_lease.agent import Agent
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

    def test_components_and_params(self):
        headers, base = self.sign()
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
