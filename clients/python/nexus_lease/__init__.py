"""nexus-lease: a small Nexus v1 agent library (docs/spec/nexus-v1.md).

    from nexus_lease import Agent, NexusError
    with Agent.enroll("https://nexus.example", token) as agent:
        print(agent.get("github", "/user", intent="who am I").json())
"""

from .agent import Agent, Response, discover
from .errors import NexusError, ProtocolError
from .keys import LeaseKey
from .response import verify_response
from .signing import check_target, content_digest, sign_request

__all__ = [
    "Agent",
    "LeaseKey",
    "NexusError",
    "ProtocolError",
    "Response",
    "check_target",
    "content_digest",
    "discover",
    "sign_request",
    "verify_response",
]
__version__ = "0.1.0"
