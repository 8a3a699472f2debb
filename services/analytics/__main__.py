"""python -m services.analytics api|worker"""

import sys

from services.analytics.entrypoints.http import create_http_app
from services.analytics.entrypoints.worker import run_worker
from services.analytics.settings import AnalyticsSettings
from services.kit.runtime import run, serve_http

settings = AnalyticsSettings()
sys.exit(
    run(
        settings,
        {
            "api": lambda stop: serve_http(create_http_app(settings), settings, stop),
            "worker": lambda stop: run_worker(settings, stop),
        },
        sys.argv[1:],
    )
)
