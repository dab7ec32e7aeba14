"""`petar serve`: run the inference service (see docs/service.md); needs the [service] extra (FastAPI, uvicorn)."""
from __future__ import annotations

import os

from ..errors import InputError
from .parser import positive_float


def add_serve(sub):
    from ..service.server import DEFAULT_MAX_BODY_MB, DEFAULT_QUEUE_SIZE

    p = sub.add_parser("serve", help="run the inference service (models stay warm; Slicer and scripts connect)",
                       description="Serve measure, segment, report and ground over HTTP (docs/service.md). Binds "
                                   "127.0.0.1 by default; any other address needs a token. With a token every "
                                   "endpoint but GET /health needs 'Authorization: Bearer <token>'. Prints one JSON "
                                   "line {\"url\", \"pid\"} on stdout once listening.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    p.add_argument("--token", help="require this bearer token (default: env PETAR_SERVICE_TOKEN, else none)")
    p.add_argument("--data-root", metavar="DIR", help="allow requests to name server-side files inside DIR "
                                                       "(default: uploads only)")
    p.add_argument("--max-body-mb", type=positive_float, default=DEFAULT_MAX_BODY_MB,
                   help=f"largest request body in MB (default {DEFAULT_MAX_BODY_MB})")
    p.add_argument("--queue-size", type=int, default=DEFAULT_QUEUE_SIZE,
                   help=f"jobs that may wait behind the running one (default {DEFAULT_QUEUE_SIZE}); more → 503")
    p.add_argument("--cache-mb", type=positive_float, default=4096,
                   help="memory for uploaded volumes, least recently used dropped first (default 4096)")
    p.add_argument("--preload", metavar="MODEL", help="load this PETAR-4B folder or hub id at start (else on first "
                                                      "use); it is also the default model of report jobs")
    p.add_argument("--parent-pid", type=int, help="exit when this process ends (used by petar.service.launch)")
    p.set_defaults(run=run_serve)


def run_serve(args) -> int:
    from ..deps import require
    from ..service.server import LOCAL_HOSTS, serve

    token = args.token or os.environ.get("PETAR_SERVICE_TOKEN") or None
    if args.host not in LOCAL_HOSTS and not token:
        raise InputError(f"--host {args.host} exposes the service beyond this machine: give --token (or set "
                         "PETAR_SERVICE_TOKEN), or bind 127.0.0.1")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: use 0..65535")
    if args.queue_size < 1:
        raise InputError("--queue-size must be at least 1")
    require(("fastapi", "uvicorn"), "service")
    return serve(args.host, args.port, token=token, parent_pid=args.parent_pid, data_root=args.data_root,
                 max_body_mb=args.max_body_mb, queue_size=args.queue_size, cache_mb=args.cache_mb,
                 preload=args.preload)
