"""python -m services.referral api|worker"""

import sys

from services.kit.runtime import run, serve_http
from services.referral.entrypoints.http import create_http_app
from services.referral.entrypoints.worker import run_worker
from services.referral.settings import ReferralSettings

settings = ReferralSettings()
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
