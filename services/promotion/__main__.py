"""python -m services.promotion grpc"""

import sys

from services.kit.runtime import run
from services.promotion.entrypoints.grpc import serve_grpc
from services.promotion.settings import PromotionSettings

settings = PromotionSettings()
sys.exit(run(settings, {"grpc": lambda stop: serve_grpc(settings, stop)}, sys.argv[1:]))
