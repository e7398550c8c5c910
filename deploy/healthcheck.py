"""Container health check: exit 0 when the service answers /readyz with 200, else 1.

The slim image has no curl; this runs with the image's Python and only the standard library.
"""

import os
import sys
import urllib.request

port = os.environ.get("AESERVE_PORT", "8000")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # connection refused, timeout, HTTP 503 while models load
    print(f"unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
