"""The petar inference service: `petar serve` keeps engines warm; `Client` talks to it with the standard library.

    from petar.service import Client, launch
    with launch() as svc:                       # a local server in a subprocess (or Client(url, token) for one
        c = svc.client()                        # already running, local or remote)
        doc = c.measure(pet, mask)              # petar.Volume objects or file paths
        mask, seg = c.segment(pet, (-80, 0, 120))
        rep = c.report(pet, ct, mask, engine="petar", on_progress=print)

Importing this package needs only numpy and SimpleITK (what Slicer ships): FastAPI, uvicorn and torch are imported
by `petar.service.server` only. The HTTP API is in docs/service.md.
"""
from __future__ import annotations

from .client import AuthError, Client, JobCancelled, ServiceBusy, ServiceError, ServiceInputError, \
    ServiceUnavailable
from .launch import LocalService, launch

__all__ = ["AuthError", "Client", "JobCancelled", "LocalService", "ServiceBusy", "ServiceError", "ServiceInputError",
           "ServiceUnavailable", "launch"]
