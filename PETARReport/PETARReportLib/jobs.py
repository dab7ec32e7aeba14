"""Engine calls as runner jobs: `job(progress, should_stop, set_cancel_hook) -> result`.

Each job takes petar Volumes (already converted from MRML on the main thread) and returns plain data (the report
JSON dict; a (grounding JSON dict, mask Volume or None) pair; a mask Volume). With `connector.client()` None the
engines run in-process (template / rule / click segmentation: numpy + SimpleITK only); otherwise the job goes to
the petar service, streams its progress and can be cancelled on the server.
"""
from __future__ import annotations

import math

from .runner import Cancelled


def _service_wait(client, job_id, progress, should_stop, set_cancel_hook, poll_s=0.5):
    """Wait for a service job (Client.wait), forwarding job documents to `progress`; stop → cancel on the server."""
    set_cancel_hook(lambda: client.cancel(job_id))
    return client.wait(job_id, on_progress=progress, poll_s=poll_s, should_stop=should_stop)


def _connect(connector, progress, should_stop):
    """The shared start of a job: report 'starting', get the client (None = in-process; it may start a local
    service, which takes seconds), and stop before any work if Cancel was pressed meanwhile."""
    progress({"stage": "starting", "tokens": 0, "text": {}})
    client = connector.client()
    if should_stop():
        raise Cancelled()
    return client


def report_job(connector, pet, ct, mask, label=None, engine="template", options=None):
    options = dict(options or {})

    def job(progress, should_stop, set_cancel_hook):
        client = _connect(connector, progress, should_stop)
        if client is None:
            import petar

            progress({"stage": "measuring", "tokens": 0, "text": {}})
            return petar.report(pet, ct, mask, label=label, engine=engine, **options).to_dict()
        job_id = client.report(pet, ct, mask, label=label, engine=engine, wait=False, **options)
        return _service_wait(client, job_id, progress, should_stop, set_cancel_hook)

    return job


def ground_job(connector, text, pet, ct=None, engine="rule", options=None):
    options = dict(options or {})

    def job(progress, should_stop, set_cancel_hook):
        client = _connect(connector, progress, should_stop)
        if client is None:
            import petar

            progress({"stage": "grounding", "tokens": 0, "text": {}})
            res = petar.ground(text, pet, ct, engine=engine, **options)
            return res.to_dict(), res.mask
        job_id = client.ground(text, pet, ct, engine=engine, wait=False, **options)
        result = _service_wait(client, job_id, progress, should_stop, set_cancel_hook)
        return client.ground_result(result, like=pet)

    return job


def click_point(point_ras) -> list:
    """A clicked RAS point as three finite floats; ValueError (shown to the user) otherwise."""
    try:
        point = [float(v) for v in point_ras]
    except (TypeError, ValueError):
        raise ValueError(f"the click point is not a RAS coordinate: {point_ras!r}") from None
    if len(point) != 3 or not all(math.isfinite(v) for v in point):
        raise ValueError(f"the click point must be three finite RAS coordinates, not {point}")
    return point


def segment_job(connector, pet, point_ras, method="percent", segment=None):
    """Runner job: click segmentation at a RAS point (snaps to the hottest voxel within 7 mm) -> mask Volume on the
    PET grid.

    `pet` (a petar Volume with its own copy of the voxels) and the point are captured on the main thread when the
    job is made; the job itself runs on the worker: `connector.client()` (it may start a local service), then the
    service's `segment` call, or in-process `petar.segment_click` (`segment` is injectable for tests). A stop asked
    before the call raises Cancelled (nothing is sent); the call itself is short and not interruptible, and the
    runner drops a result that arrives after a stop. petar's errors (e.g. "nothing hot near the click") propagate
    to the widget's error dialog.
    """
    point = click_point(point_ras)

    def job(progress, should_stop, set_cancel_hook):
        client = connector.client()
        if should_stop():
            raise Cancelled()
        progress({"stage": "segmenting"})
        if client is None:
            if segment is not None:
                return segment(pet, point, space="ras", method=method)
            import petar

            return petar.segment_click(pet, point, space="ras", method=method)
        mask, _doc = client.segment(pet, point, space="ras", method=method)
        return mask

    return job


_SEGMENT_STAGES = {"starting": "starting", "segmenting": "segmenting the clicked lesion", "done": "done"}


def segment_progress(doc: dict):
    """(percent or None, status text) for a click-segmentation job: a busy bar (a single call has no fraction)."""
    stage = str(doc.get("stage") or "")
    if stage == "done":
        return 100, _SEGMENT_STAGES["done"]
    return None, _SEGMENT_STAGES.get(stage, stage or "working")
