"""`python -m zray.services.supervisor SESSION_DIR`: run and watch the services
listed in SESSION_DIR/supervisor.json until SIGTERM."""

from __future__ import annotations

import sys

from zray.services.supervisor.runner import main

main(sys.argv[1:])
