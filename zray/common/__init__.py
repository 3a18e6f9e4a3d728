"""Shared library of zray's parts: ids, messages, wire, serialization, config, errors."""
