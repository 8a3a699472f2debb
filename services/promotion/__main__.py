"""python -m services.promotion api|grpc|worker"""

import sys

from services.kit.runtime import run, serve_http
from services.promotion.entrypoints.grpc import serve_grpc
from services.promotion.entrypoints.http import create_http_app
from services.promotion.entrypoints.worker import run_worker
from services.promotion.settings import PromotionSettings

settings = PromotionSettings()
sys.exit(
    run(
        settings,
        {
            "api": lambda stop: serve_http(create_http_app(settings), settings, stop),
            "grpc": lambda stop: serve_grpc(settings, stop),
            "worker": lambda stop: run_worker(settings, stop),
        },
        sys.argv[1:],
    )
)
