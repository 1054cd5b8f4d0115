"""An agent written with nexus_lease, driven by test/python-client.e2e.test.ts against a real
node. Reads NEXUS_AUTHORITY, NEXUS_ENROLLMENT_TOKEN, NEXUS_KEY_ALG and, if set,
NEXUS_WAIT_FOR_RENEWAL; prints one JSON object per step on stdout for the test to check.
"""

import json
import os
import sys
import time

from nexus_lease import Agent, NexusError
from nexus_lease.response import verify_relayed


def step(name, **facts):
    print(json.dumps({"step": name, **facts}), flush=True)


def refusal(call):
    try:
        res = call()
        return {"status": res.status}
    except NexusError as err:
        return {"code": err.code, "status": err.status, "local": err.local, "request_id": err.request_id}


token = os.environ["NEXUS_ENROLLMENT_TOKEN"]
agent = Agent.from_env(algorithm=os.environ["NEXUS_KEY_ALG"])
claims = agent.lease_claims
step(
    "enrolled",
    agent=agent.name,
    jwk=claims["cnf"]["jwk"],
    jti=agent.lease_id,
    token_left_in_env="NEXUS_ENROLLMENT_TOKEN" in os.environ,
    signature_profile=agent.signature_profile,
    verifies_refusals=agent._jwks is not None and len(agent._jwks.keys) > 0,
    python=sys.version,
)
# The token is single use (§12.1): the Authority's refusal surfaces as a NexusError too.
step("token-reused", **refusal(lambda: Agent.enroll(os.environ["NEXUS_AUTHORITY"], token)))

res = agent.post("echo", "/repos/acme/app/issues?state=open", json_body={"title": "hi"}, intent="file a bug")
step("call", status=res.status, request_id=res.request_id, body=res.text, origin=res.headers.get("Nexus-Origin"))
# The relayed answer was verified (request() returned it); its signature is bound to that
# request's nonce and to its status: neither another nonce nor another status verifies.
def rebound(**change):
    args = dict(status=res.status, method="POST", nonce="x" * 22)
    args.update(change)
    try:
        verify_relayed(
            args["status"],
            list(res.headers.items()),
            method=args["method"],
            url=agent.proxy_url + "/echo/repos/acme/app/issues?state=open",
            nonce=args["nonce"],
            keys=agent._jwks.keys,
        )
        return "verified"
    except NexusError as err:
        return err.code
step("relayed-rebound", other_nonce=rebound())

first = agent.lease_id
agent.renew()
renewed = agent.lease_claims
step("renewed", before=first, after=agent.lease_id, jwk=renewed["cnf"]["jwk"], sub=renewed["sub"])
res = agent.get("echo", "/after-renewal", intent="still me")
step("call-after-renewal", status=res.status)

if os.environ.get("NEXUS_WAIT_FOR_RENEWAL"):
    # Wait for the last third of the lease: the next request renews it first (§12.2).
    claims = agent.lease_claims
    time.sleep(max(0.0, claims["exp"] - (claims["exp"] - claims["iat"]) / 3 - time.time() + 0.5))
    before = agent.lease_id
    res = agent.get("echo", "/auto-renewed")
    step("auto-renewed", status=res.status, before=before, after=agent.lease_id)

step("too-large", **refusal(lambda: agent.post("echo", "/upload", body=b"x" * 4096)))

step("denied", **refusal(lambda: agent.get("echo", "/admin/users", intent="look around")))
step("dot-segment", **refusal(lambda: agent.get("echo", "/../v1/leases/renew")))
step("encoded-dot", **refusal(lambda: agent.get("echo", "/%2e%2e/v1/leases/renew")))
step("reserved", **refusal(lambda: agent.get("v1", "/leases/renew")))
# An upstream's error that imitates a Nexus problem is relayed data, not a refusal (§10.1).
step("imitation", **refusal(lambda: agent.get("echo", "/imitate")))
# An upstream that writes Nexus-Error itself: the proxy removes the field (§13.2), and were
# it to get through unsigned, the library would not act on it (§10.4, test_library.py).
res_or_err = refusal(lambda: agent.get("echo", "/forge"))
step("forged", **res_or_err)
# An upstream that writes a Nexus-looking response signature: the proxy drops it, and the
# answer verifies as the upstream's, relayed (never as a Nexus refusal).
step("forged-signature", **refusal(lambda: agent.get("echo", "/forge-signed")))

agent.revoke()
step("revoked", **refusal(lambda: agent.get("echo", "/after-revoke")))
agent.revoke()  # revoking again is done, not an error (§12.3)
step("done")
