"""``python -m bench.empty_http PORT``: the HTTP framework ceiling of the coupon-claim bench.

The claim route's twin, ``POST /v1/merchants/{merchant_id}/coupon-templates/{template_id}/claims``,
on the kit's own application (:func:`services.kit.http.create_app`: request id, problem+json,
body limit, metrics, the bearer token verified and the buyer role required, the same path
parameters and body model as promotion's claim) that answers without doing anything. It is
served exactly as promotion's API is (:func:`services.kit.runtime.run` with uvloop and
:func:`services.kit.runtime.serve_http`), so the difference between this and a real claim is
the work of claiming (the rate limit, the Redis decision, the durable commit), not the server.
"""

from __future__ import annotations

import sys

from fastapi import APIRouter

from services.kit.http import CurrentCaller, create_app
from services.kit.runtime import run, serve_http
from services.kit.settings import ServiceSettings
from services.promotion.entrypoints.http import (
    BUYER_ROLES,
    ClaimAnswer,
    ClaimBody,
    Id,
    MerchantId,
)

router = APIRouter(prefix="/v1/merchants/{merchant_id}")


@router.post("/coupon-templates/{template_id}/claims")
async def claim(
    merchant_id: MerchantId, template_id: Id, body: ClaimBody, caller: CurrentCaller
) -> ClaimAnswer:
    caller.require_role(*BUYER_ROLES)
    return ClaimAnswer(outcome="claimed", coupon_id=body.claim_id, template_id=template_id)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m bench.empty_http PORT", file=sys.stderr)
        return 2
    settings = ServiceSettings(service_name="bench-empty-http", http_port=int(argv[0]))
    app = create_app(settings, title="bench: empty claim", routers=[router])
    return run(settings, {"serve": lambda stop: serve_http(app, settings, stop)}, ["serve"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
