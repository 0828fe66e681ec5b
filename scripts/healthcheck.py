#!/usr/bin/env python3
"""Container health check: GET /health on the port of SERVER_ADDRESS; exit 0 when it answers 200.

Used by the Dockerfile's HEALTHCHECK and the compose/Kubernetes probes' exec form where HTTP probes are
not available. Standard library only: the runtime image has no curl.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request


def main() -> int:
    address = os.environ.get("SERVER_ADDRESS", ":8080")
    port = address.rpartition(":")[2] or "8080"
    path = sys.argv[1] if len(sys.argv) > 1 else "/health"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            body = json.loads(response.read() or b"{}")
            return 0 if response.status == 200 and body.get("status") in ("healthy", "ready") else 1
    except Exception as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
