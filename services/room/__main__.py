"""python -m services.room api|worker"""

import sys

from services.kit.runtime import run, serve_http
from services.room.entrypoints.http import create_http_app
from services.room.entrypoints.worker import run_worker
from services.room.settings import RoomSettings

settings = RoomSettings()
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
