"""Nexus refusals as Python exceptions (spec §10).

A refusal by Nexus is recognised by the `Nexus-Error` response field only (§10.1); an
upstream's own error, even one that imitates a problem document, is a normal response.
Code that handles errors dispatches on `code`, never on `detail`.
"""

from __future__ import annotations

# Status per code for refusals this library makes itself, before sending anything: the
# target (§7.1 ROUTE-CLIENT), the intent (§6), the body size (§11.1), an expired lease.
LOCAL_STATUS = {
    "request_invalid": 400,
    "path_invalid": 400,
    "intent_invalid": 400,
    "lease_expired": 401,
    "service_unknown": 404,
    "body_too_large": 413,
}


class NexusError(Exception):
    """A problem+json refusal from a Nexus proxy or Authority, or a local refusal.

    `code` is the stable error code (`policy_denied`, `lease_revoked`, ...), `status` the
    HTTP status, `detail` the server's text, `request_id` the id to quote to the operator;
    `local` is true when the library refused before sending anything.
    """

    def __init__(
        self,
        code: str,
        status: int | None = None,
        detail: str = "",
        request_id: str | None = None,
        local: bool = False,
    ):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.status = status if status is not None else LOCAL_STATUS.get(code)
        self.detail = detail
        self.request_id = request_id
        self.local = local


class ProtocolError(Exception):
    """The Authority answered something this library cannot use (not a Nexus refusal)."""
