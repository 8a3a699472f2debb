"""The shared kernel every service stands on, written once.

Envelope, event store, outbox relay, consumer with inbox, durable timers, identity,
gRPC and HTTP bootstrap, settings, logging and metrics. Nothing here connects at import.
"""
