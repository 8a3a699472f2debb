"""python -m services.inventory api|grpc|worker|reconcile"""

import asyncio
import sys

from services.inventory.entrypoints.grpc import serve_grpc
from services.inventory.entrypoints.http import create_http_app
from services.inventory.entrypoints.worker import reconcile_once, run_worker
from services.inventory.settings import InventorySettings
from services.kit.runtime import run, serve_http

settings = InventorySettings()
if sys.argv[1:] == ["reconcile"]:
    sys.exit(asyncio.run(reconcile_once(settings)))
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
