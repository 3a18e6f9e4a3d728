"""Pydantic message models, grouped by the sockets that carry them."""
