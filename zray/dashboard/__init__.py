"""The web dashboard `zray start --head` serves: a stdlib HTTP server, one
static page, and a JSON snapshot of the cluster that the page polls."""
