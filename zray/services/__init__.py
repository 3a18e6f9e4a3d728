"""zray's services: each runs as its own process."""
