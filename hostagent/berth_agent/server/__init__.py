"""The agent's HTTPS API (mutual TLS), its metrics and its OpenAPI description."""
