"""Pieces every berth component shares: processes, structured logs, certificates."""
