"""Promotion's gRPC API for other services: the price quote.

The quote is pure (the caller passes the promotions and coupons in), so this server holds
no database pool or other connection: it verifies the caller, maps the request, prices it
and maps the answer back.
"""

from __future__ import annotations

import asyncio

from livecommerce.promotion.v1 import promotion_pb2 as pb
from livecommerce.promotion.v1 import promotion_pb2_grpc
from services.kit.grpc import Context, current_caller, start_grpc_server
from services.kit.identity import Role, TokenVerifier
from services.kit.metrics import serve_metrics
from services.promotion.adapters.protobuf import (
    quote_to_proto,
    request_from_proto,
    rules_from_proto,
)
from services.promotion.domain.quote import quote
from services.promotion.settings import PromotionSettings

QUOTE_ROLES = (Role.SERVICE, Role.OPS, Role.MERCHANT_ADMIN, Role.OPERATOR)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PromotionService"].full_name


class PromotionServicer(promotion_pb2_grpc.PromotionServiceServicer):
    async def Quote(self, request: pb.QuoteRequest, context: Context) -> pb.QuoteReply:
        caller = current_caller()
        caller.require_role(*QUOTE_ROLES)
        merchant_id = caller.acting_for(request.merchant_id, f"merchant {request.merchant_id}")
        result = quote(request_from_proto(request, merchant_id), rules_from_proto(request))
        return quote_to_proto(result)


async def serve_grpc(settings: PromotionSettings, stop: asyncio.Event) -> None:
    serve_metrics(settings.metrics_port)
    servicer = PromotionServicer()
    server, _ = await start_grpc_server(
        service=settings.service_name,
        address=f"{settings.grpc_host}:{settings.grpc_port}",
        verifier=TokenVerifier(settings),
        register=lambda s: promotion_pb2_grpc.add_PromotionServiceServicer_to_server(servicer, s),
        service_names=[SERVICE_NAME],
    )
    await stop.wait()
    await server.stop(grace=5)
