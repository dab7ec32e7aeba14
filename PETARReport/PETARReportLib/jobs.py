"""Engine calls as runner jobs: `job(progress, should_stop, set_cancel_hook) -> result`.

Each job takes petar Volumes (already converted from MRML on the main thread) and returns plain data (the report
JSON dict; a (grounding JSON dict, mask Volume or None) pair; a mask Volume). With `connector.client()` None the
engines run in-process (template / rule / click segmentation: numpy + SimpleITK only); otherwise the job goes to
the petar service, streams its progress and can be cancelled on the server.
"""
from __future__ import annotations

from .runner import Cancelled


def _service_wait(client, job_id, progress, should_stop, set_cancel_hook, poll_s=0.5):
    """Wait for a service job (Client.wait), forwarding job documents to `progress`; stop → cancel on the server."""
    set_cancel_hook(lambda: client.cancel(job_id))
    return client.wait(job_id, on_progress=progress, poll_s=poll_s, should_stop=should_stop)


def report_job(connector, pet, ct, mask, label=None, engine="template", options=None):
    options = dict(options or {})

    def job(progress, should_stop, set_cancel_hook):
        progress({"stage": "starting", "tokens": 0, "text": {}})
        client = connector.client()
        if should_stop():
            raise Cancelled()
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
        progress({"stage": "starting", "tokens": 0, "text": {}})
        client = connector.client()
        if should_stop():
            raise Cancelled()
        if client is None:
            import petar

            progress({"stage": "grounding", "tokens": 0, "text": {}})
            res = petar.ground(text, pet, ct, engine=engine, **options)
            return res.to_dict(), res.mask
        job_id = client.ground(text, pet, ct, engine=engine, wait=False, **options)
        result = _service_wait(client, job_id, progress, should_stop, set_cancel_hook)
        return client.ground_result(result, like=pet)

    return job


def segment_job(connector, pet, point_ras, method="percent"):
    """Click segmentation at a RAS point (snaps to the hottest voxel within 7 mm) -> mask Volume on the PET grid."""
    point = [float(v) for v in point_ras]

    def job(progress, should_stop, set_cancel_hook):
        client = connector.client()
        if client is None:
            import petar

            return petar.segment_click(pet, point, space="ras", method=method)
        mask, _doc = client.segment(pet, point, space="ras", method=method)
        return mask

    return job
