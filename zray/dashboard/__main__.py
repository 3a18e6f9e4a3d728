"""`python -m zray.dashboard --gcs-address A [--host H] [--port P]`: serve until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from zray.dashboard.server import DEFAULT_PORT, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zray.dashboard")
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s dashboard %(levelname)s %(message)s")
    try:
        server = serve(args.gcs_address, args.host, args.port)
    except OSError as exc:
        sys.exit(f"dashboard: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logging.info("serving http://%s:%d/ for the cluster at %s", args.host, server.server_address[1],
                 args.gcs_address)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
