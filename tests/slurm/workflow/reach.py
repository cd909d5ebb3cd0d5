"""A job's view of the network: can it reach the stand-in remote endpoint (a URL, the
first argument; tests/test_slurm.py serves it on an address only the serial node
reaches)? Prints `remote=ok`, `remote=failed <why>`, or `remote=none` without a URL."""

import sys
import urllib.request

url = sys.argv[1] if len(sys.argv) > 1 else ""
if not url:
    print("remote=none")
    sys.exit(0)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # direct, no proxy
try:
    opener.open(url.rstrip("/") + "/models", timeout=5).read()
    print("remote=ok")
except OSError as err:
    print(f"remote=failed {err}")
