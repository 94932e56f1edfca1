"""What every service needs: Kafka consumption with idempotency and dead letters, the outbox, HTTP probes."""
