"""Project tooling: the local stack (Postgres, Redis, Kafka-protocol broker and the services
as local processes under supervisord), code generation, and the ``livecommerce`` CLI."""
