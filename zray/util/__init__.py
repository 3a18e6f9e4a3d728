"""Tools around the core API: the state API (zray.util.state)."""
