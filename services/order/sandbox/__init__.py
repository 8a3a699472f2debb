"""The sandbox payment gateway: a small provider that behaves like WeChat Pay or Alipay in
their sandboxes (hosted pay step, signed asynchronous notifications that arrive late, twice
or out of order, partial refunds), so the order service is tested against real-world
provider behaviour without a provider account. ``python -m services.order sandbox``.

This module imports nothing: the order service's adapter imports :mod:`.signing` alone.
"""
