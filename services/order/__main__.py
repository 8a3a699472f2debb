"""python -m services.order api|worker|sandbox"""

import sys

from services.kit.runtime import run, serve_http
from services.order.entrypoints.http import create_http_app
from services.order.entrypoints.worker import run_worker
from services.order.sandbox.app import create_sandbox_app
from services.order.sandbox.settings import SandboxSettings
from services.order.settings import OrderSettings

settings = OrderSettings()
sys.exit(
    run(
        settings,
        {
            "api": lambda stop: serve_http(create_http_app(settings), settings, stop),
            "worker": lambda stop: run_worker(settings, stop),
            "sandbox": lambda stop: serve_http(
                create_sandbox_app(SandboxSettings()), SandboxSettings(), stop
            ),
        },
        sys.argv[1:],
    )
)
