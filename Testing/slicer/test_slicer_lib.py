"""PETARReportLib / PETARGroundingLib without Slicer: geometry, state, settings, runner, jobs, results, deps."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

import slicer_paths  # noqa: F401  (sys.path for the module Lib packages)

import petar
import PETARGroundingLib as G
import PETARReportLib as L
from PETARReportLib import deps
from PETARReportLib.report_results import progress_percent, streamed_text
from PETARReportLib.runner import Cancelled


@pytest.fixture(scope="module")
def phantom():
    return petar.make_phantom(seed=1, shape=(120, 80, 80), spacing=(4.0, 4.0, 4.0))


def drain(runner):
    runner.wait(60)
    runner.poll()


def test_geometry_round_trip_and_ras_of_an_index(phantom):
    pet = phantom.pet
    pet = petar.Volume(pet.array, pet.spacing, pet.origin, np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1.0]]))
    m = L.ijk_to_ras_from_volume(pet)
    back = L.volume_from_ijk_to_ras(pet.array, m)
    assert np.allclose(back.spacing, pet.spacing) and np.allclose(back.origin, pet.origin)
    assert np.allclose(back.direction, pet.direction)
    ijk = np.array([3, 5, 7, 1.0])
    assert np.allclose((m @ ijk)[:3], pet.index_to_world(ijk[:3], space="ras"))
    assert np.allclose(L.ras_to_lps(L.lps_to_ras([1, 2, 3])), [1, 2, 3])


def test_state_machine_generate_cancel_cycle():
    seen = []
    sm = L.StateMachine("Generate")
    sm.listeners.append(seen.append)
    assert sm.button_text == "Generate" and sm.click() == "start"
    sm.start(needs_service_start=True)
    assert sm.state is L.RunState.STARTING and sm.button_text == "Cancel"
    sm.service_ready()
    assert sm.cancel() and sm.state is L.RunState.CANCELLING and not sm.button_enabled and sm.click() == "ignore"
    assert not sm.cancel()
    sm.finish()
    assert seen == [L.RunState.STARTING, L.RunState.RUNNING, L.RunState.CANCELLING, L.RunState.IDLE]
    with pytest.raises(RuntimeError):
        sm._go(L.RunState.CANCELLING)


def test_settings_round_trip_coerce_and_validate(caplog):
    backend = L.DictBackend()
    s = L.Settings(service_mode="remote", service_url="https://gpu:8765", report_engine="petar", max_new_tokens=99)
    s.save(backend)
    backend.data["PETAR/max_new_tokens"] = "99"          # QSettings hands back strings
    loaded = L.Settings.load(backend)
    assert loaded == s and loaded.validate() == (True, "")
    assert loaded.report_options()["max_new_tokens"] == 99
    backend.data["PETAR/max_new_tokens"] = "many"
    assert L.Settings.load(backend).max_new_tokens == 256 and "unreadable" in caplog.text
    assert not L.Settings(report_engine="petar").validate()[0]                  # in-process cannot run PETAR-4B
    assert "checkpoint" in L.Settings(service_mode="local", grounding_engine="contextual").validate()[1]
    assert not L.Settings(service_mode="remote", service_url="gpu:8765").validate()[0]
    assert L.Settings().report_options() == {} and L.Settings().grounding_options() == {}


def test_runner_delivers_progress_and_result_only_on_poll():
    runner = L.EngineRunner()
    events = []
    runner.progress.connect(lambda d: events.append(("p", threading.current_thread().name)))
    runner.finished.connect(lambda r: events.append(("done", r, threading.current_thread().name)))

    def job(progress, should_stop, hook):
        progress({"stage": "x"})
        return 42

    runner.start(job)
    runner.wait(10)
    assert events == []                                     # nothing is applied off the main thread
    drain(runner)
    main = threading.current_thread().name
    assert events == [("p", main), ("done", 42, main)] and not runner.running


def test_runner_failure_and_cancel_with_hook():
    runner = L.EngineRunner()
    got = []
    runner.failed.connect(got.append)
    runner.start(lambda p, s, h: (_ for _ in ()).throw(petar.InputError("bad input: PET is HU")))
    drain(runner)
    assert isinstance(got[0], petar.InputError) and "HU" in str(got[0])

    started, hooked, cancelled = threading.Event(), threading.Event(), []
    runner.cancelled.connect(lambda: cancelled.append(True))

    def slow(progress, should_stop, set_hook):
        set_hook(hooked.set)
        started.set()
        while not should_stop():
            threading.Event().wait(0.01)
        return "late"

    runner.start(slow)
    started.wait(5)
    with pytest.raises(RuntimeError):
        runner.start(slow)
    runner.cancel()
    drain(runner)
    assert hooked.wait(5) and cancelled == [True]


def test_report_and_ground_jobs_in_process(phantom):
    conn = L.ServiceConnector(L.Settings())
    truth = phantom.truth[0]
    mask = petar.Volume.from_array((phantom.lesions.array == truth["label"]).astype(np.uint8), like=phantom.pet)
    runner, out = L.EngineRunner(), []
    runner.finished.connect(out.append)
    runner.start(L.report_job(conn, phantom.pet, phantom.ct, mask))
    drain(runner)
    report = out[0]
    assert report["engine"] == "template" and len(report["findings"]) == 1
    rows = L.findings_rows(report, {1: "my lesion"})
    assert rows[0]["cells"][0] == "my lesion" and float(rows[0]["cells"][1]) > 1
    assert len(rows[0]["center_ras"]) == 3 and len(rows[0]["cells"]) == len(L.TABLE_COLUMNS)
    text = f"FDG-avid {truth['name']}, SUVmax {truth['suv_max']:.1f}, image {truth['axial_slice']}"
    result, gmask = L.ground_job(conn, text, phantom.pet)(lambda d: None, lambda: False, lambda h: None)
    assert result["status"] == "found" and gmask.array.sum() > 0
    assert G.segment_name(result) == "left axillary node"
    assert G.segment_name(result, ["left axillary node"]) == "left axillary node (2)"
    assert "SUVmax" in G.result_summary(result)
    clicked = L.segment_job(conn, phantom.pet, truth["center_ras"])(lambda d: None, lambda: False, lambda h: None)
    assert clicked.array[gmask.array > 0].mean() > 0.5


class FakeClient:
    """Fake transport, real polling: `wait` is the service client's own."""

    from petar.service.client import Client
    wait = Client.wait
    del Client

    def __init__(self, docs):
        self.docs, self.cancelled, self.calls = list(docs), [], []

    def report(self, *a, **kw):
        self.calls.append(kw)
        return "job1"

    def progress(self, job_id, since=None, wait_s=0.0):
        return self.docs.pop(0) if len(self.docs) > 1 else self.docs[0]

    def cancel(self, job_id):
        self.cancelled.append(job_id)


def test_report_job_through_service_streams_and_cancels(phantom):
    docs = [{"version": 1, "status": "running", "stage": "generating", "tokens": 5, "text": {"1": "A hyper"}},
            {"version": 2, "status": "done", "stage": "done", "tokens": 9, "text": {"1": "A hypermetabolic"},
             "result": {"engine": "petar", "findings": []}}]
    client = FakeClient(docs)
    conn = L.ServiceConnector(L.Settings(service_mode="remote"), client_factory=lambda url, token: client)
    seen = []
    job = L.report_job(conn, phantom.pet, phantom.ct, phantom.lesions, engine="petar", options={"device": "cuda"})
    assert job(seen.append, lambda: False, lambda h: None) == {"engine": "petar", "findings": []}
    assert client.calls[0]["device"] == "cuda" and client.calls[0]["wait"] is False
    assert streamed_text(seen[1], {1: "node"}) == "node: A hyper"
    assert 10 <= progress_percent(seen[1], 256, 1) < 100 and progress_percent(seen[-1], 256, 1) == 100
    from petar.service.client import JobCancelled
    client = FakeClient([{"version": 1, "status": "running", "stage": "generating", "tokens": 1, "text": {}},
                         {"version": 2, "status": "cancelled", "stage": "cancelled", "tokens": 1, "text": {}}])
    conn = L.ServiceConnector(L.Settings(service_mode="remote"), client_factory=lambda url, token: client)
    asked = []                                   # the user presses Cancel after the job was submitted
    with pytest.raises(JobCancelled):
        L.report_job(conn, phantom.pet, None, phantom.lesions)(lambda d: None, lambda: bool(asked.append(1)) or
                                                               len(asked) > 1, lambda h: None)
    assert client.cancelled == ["job1"]


def test_connector_modes_start_local_once_and_stop():
    class Service:
        def __init__(self):
            self.stopped = False

        def running(self):
            return not self.stopped

        def client(self):
            return "client"

        def stop(self):
            self.stopped = True

    started = []
    s = L.Settings(service_mode="local", python_executable="/opt/py")
    conn = L.ServiceConnector(s, launcher=lambda py: started.append(py) or Service())
    assert conn.needs_start()
    assert conn.client() == "client" and conn.client() == "client" and started == ["/opt/py"]
    assert not conn.needs_start()
    conn.close()
    assert conn.needs_start()
    assert L.ServiceConnector(L.Settings()).client() is None


def test_dependency_plan_and_install_paths():
    reqs = deps.read_requirements("fastapi>=0.110\n# c\nnumpy>=2\nSimpleITK\nuvicorn>=0.29\n")
    assert reqs == ["fastapi>=0.110", "uvicorn>=0.29"]
    assert deps.plan_dependencies(L.Settings(), reqs, [], lambda r: False).nothing_to_do
    assert deps.plan_dependencies(L.Settings(service_mode="local", python_executable="/py"), reqs, [],
                                  lambda r: False).nothing_to_do
    plan = deps.plan_dependencies(L.Settings(service_mode="local"), reqs, ["transformers>=5"], lambda r: False)
    assert plan.requirements == reqs and not plan.needs_pytorch_extension
    calls = []
    assert deps.ensure_local_petar(plan, (5, 12), None, pip_ensure=lambda r, **kw: calls.append((r, kw)))
    assert "SimpleITK" in calls[0][1]["skip_packages"] and "numpy" in calls[0][1]["skip_packages"]
    assert not deps.ensure_local_petar(plan, (5, 10), lambda t, d: False, pip_install=calls.append)
    assert deps.ensure_local_petar(plan, (5, 8), lambda t, d: "fastapi" in d, pip_install=calls.append)
    assert calls[-1] == '"fastapi>=0.110" "uvicorn>=0.29"'
    torch_plan = deps.plan_dependencies(L.Settings(service_mode="local", report_engine="petar"), reqs,
                                        ["transformers>=5"], lambda r: r != "torch")
    with pytest.raises(RuntimeError, match="PyTorch extension"):
        deps.ensure_local_petar(torch_plan, (5, 12), None, pip_ensure=lambda *a, **k: None)
    assert deps.slicer_version_tuple("5.12.3") == (5, 12)


def test_exports_are_atomic_and_state_conventions(tmp_path):
    report = {"engine": "template", "suv_type": "bw", "slice_origin": "superior",
              "findings": [{"label": 1, "text": "A node.", "measurement": {"suv_max": 5.0}}]}
    L.export_text(str(tmp_path / "f.txt"), "node: edited", report)
    assert "superior end" in (tmp_path / "f.txt").read_text() and "edited" in (tmp_path / "f.txt").read_text()
    L.export_json(str(tmp_path / "f.json"), report, "node: edited", {1: "node"})
    doc = json.loads((tmp_path / "f.json").read_text())
    assert doc["edited_text"] == "node: edited" and doc["segment_names"] == {"1": "node"}
    assert [p.name for p in tmp_path.iterdir()] and not any(p.name.startswith(".petar-") for p in tmp_path.iterdir())


def test_candidate_list_steps_and_accepts(phantom):
    result = {"candidates": [{"score": 0.9, "suv_max": 6.0, "axial_slice": 30, "side": "left",
                              "hottest_ras": [-79.7, 0.0, 96.0]},
                             {"score": 0.5, "suv_max": 5.0, "axial_slice": 60, "side": "right",
                              "hottest_ras": [0.0, 0.0, 0.0]}]}
    c = G.CandidateList(result)
    assert len(c) == 2 and c.current["axial_slice"] == 30
    assert c.next()["axial_slice"] == 60 and c.next()["axial_slice"] == 30 and c.previous()["axial_slice"] == 60
    assert c.labels()[0].startswith("1. SUVmax 6.00")
    with pytest.raises(IndexError):
        c.select(5)
    c.select(0)
    mask = G.candidate_mask(phantom.pet, c.accept())
    assert mask.array.sum() > 0
    assert G.CandidateList({}).accept() is None
    assert not G.validate_text("  ")[0] and G.validate_text("left axillary node")[0]


def test_ground_progress_percent_only_for_a_fraction():
    # the service's ground job document: status, stage (queued, starting, grounding, done), queued_s; no fraction
    assert G.ground_progress({"status": "queued", "stage": "queued", "queued_s": 3.2}) == (
        None, "waiting in the service queue (3 s)")
    assert G.ground_progress({"status": "running", "stage": "grounding", "tokens": 0}) == (
        None, "localizing the finding")
    assert G.ground_progress({"stage": "starting"}) == (None, "starting")        # in-process job documents
    assert G.ground_progress({"stage": "grounding", "fraction": 0.426}) == (43, "localizing the finding (43 %)")
    assert G.ground_progress({"stage": "grounding", "fraction": 1.0})[0] == 99   # 100 only once done
    assert G.ground_progress({"stage": "grounding", "fraction": -2})[0] == 0
    for bad in (None, True, "0.5", float("nan")):
        assert G.ground_progress({"stage": "grounding", "fraction": bad})[0] is None
    assert G.ground_progress({"status": "done", "stage": "done", "result": {}}) == (100, "done")
    assert G.ground_progress({"stage": "new stage"}) == (None, "new stage") and G.ground_progress({})[1] == "working"


class SegmentClient:
    """Fake service client: records `segment` calls; the mask comes from the in-process click segmentation."""

    def __init__(self):
        self.calls = []

    def segment(self, pet, point, space="ras", method="percent", **kw):
        self.calls.append({"pet": pet, "point": point, "space": space, "method": method, **kw})
        return petar.segment_click(pet, point, space=space, method=method), {"mask": {"volume_id": "m1"}}


def test_accepting_a_candidate_uses_the_service_segment_call_in_service_mode(phantom):
    seed = [float(v) for v in phantom.truth[0]["center_ras"]]
    candidate = {"score": 0.9, "suv_max": 6.0, "axial_slice": 37, "hottest_ras": seed}
    assert G.candidate_request(candidate) == {"point": seed, "space": "ras", "method": "percent"}
    for bad in ({}, {"hottest_ras": [1.0, 2.0]}, {"hottest_ras": [1.0, float("nan"), 2.0]}, None):
        with pytest.raises(ValueError):
            G.candidate_request(bad)
    assert not G.accept_in_service(L.Settings())
    assert G.accept_in_service(L.Settings(service_mode="remote")) and G.accept_in_service(
        L.Settings(service_mode="local"))

    client = SegmentClient()
    conn = L.ServiceConnector(L.Settings(service_mode="remote"), client_factory=lambda url, token: client)
    runner, masks, stages = L.EngineRunner(), [], []
    runner.finished.connect(masks.append)
    runner.progress.connect(lambda doc: stages.append(doc["stage"]))
    runner.start(G.candidate_job(conn, phantom.pet, candidate))
    drain(runner)
    assert stages == ["starting", "segmenting"] and len(client.calls) == 1
    assert client.calls[0]["pet"] is phantom.pet and client.calls[0]["point"] == seed
    assert (client.calls[0]["space"], client.calls[0]["method"]) == ("ras", "percent")
    in_process = G.candidate_mask(phantom.pet, candidate)           # in-process mode: no client is made
    assert masks[0].array.sum() > 0 and np.array_equal(masks[0].array > 0, in_process.array > 0)
    local = L.ServiceConnector(L.Settings())
    assert np.array_equal(G.candidate_job(local, phantom.pet, candidate)(lambda d: None, lambda: False,
                                                                         lambda h: None).array, in_process.array)
    stopped = G.candidate_job(conn, phantom.pet, candidate)
    with pytest.raises(Cancelled):
        stopped(lambda d: None, lambda: True, lambda h: None)      # cancelled before the call: nothing sent
    assert len(client.calls) == 1


def test_click_segment_job_in_process_and_through_the_service(phantom):
    """Click lesion's job: in-process (petar.segment_click on the worker) and in service mode (the client's
    `segment` call with the captured PET and point); the mask is delivered only by poll() on the main thread."""
    seed = [float(v) for v in phantom.truth[0]["center_ras"]]
    expected = petar.segment_click(phantom.pet, seed, space="ras")
    assert expected.array.sum() > 0

    runner, masks, stages, threads = L.EngineRunner(), [], [], []
    runner.finished.connect(lambda m: (masks.append(m), threads.append(threading.current_thread())))
    runner.progress.connect(lambda doc: stages.append(doc["stage"]))
    runner.start(L.segment_job(L.ServiceConnector(L.Settings()), phantom.pet, np.array(seed)))
    runner.wait(60)
    assert masks == []                                          # nothing reaches the widget before poll()
    runner.poll()
    assert stages == ["segmenting"] and threads == [threading.main_thread()]
    assert np.array_equal(masks[0].array, expected.array)

    client = SegmentClient()
    conn = L.ServiceConnector(L.Settings(service_mode="remote"), client_factory=lambda url, token: client)
    runner.start(L.segment_job(conn, phantom.pet, seed, method="adaptive"))
    drain(runner)
    assert len(client.calls) == 1 and client.calls[0]["pet"] is phantom.pet and client.calls[0]["point"] == seed
    assert (client.calls[0]["space"], client.calls[0]["method"]) == ("ras", "adaptive")
    assert len(masks) == 2 and masks[1].shape == phantom.pet.shape

    for bad in ([1.0, 2.0], [1.0, float("nan"), 2.0], None, ["a", "b", "c"]):
        with pytest.raises(ValueError):
            L.segment_job(conn, phantom.pet, bad)                   # checked on the main thread: no job is made
    assert L.segment_progress({"stage": "starting"}) == (None, "starting")
    assert L.segment_progress({"stage": "segmenting"}) == (None, "segmenting the clicked lesion")
    assert L.segment_progress({"stage": "done"}) == (100, "done") and L.segment_progress({})[0] is None


def test_click_segment_job_cancelled_before_the_call_and_petar_errors(phantom):
    seed = [float(v) for v in phantom.truth[0]["center_ras"]]
    client, calls = SegmentClient(), []
    conn = L.ServiceConnector(L.Settings(service_mode="remote"), client_factory=lambda url, token: client)
    with pytest.raises(Cancelled):                              # stop asked before the call: nothing is sent
        L.segment_job(conn, phantom.pet, seed)(lambda d: None, lambda: True, lambda h: None)
    with pytest.raises(Cancelled):                              # in-process: the segmentation never runs
        L.segment_job(L.ServiceConnector(L.Settings()), phantom.pet, seed, segment=lambda *a, **k: calls.append(a))(
            lambda d: None, lambda: True, lambda h: None)
    assert client.calls == [] and calls == []

    class StartingService:
        """A local service still starting: `client()` blocks until released (the worker waits, not the GUI)."""

        def __init__(self):
            self.asked, self.release = threading.Event(), threading.Event()

        def needs_start(self):
            return True

        def client(self):
            self.asked.set()
            self.release.wait(10)
            return client

    starting = StartingService()
    runner, got = L.EngineRunner(), []
    for signal in ("finished", "failed", "cancelled", "progress"):
        getattr(runner, signal).connect(lambda *a, name=signal: got.append(name))
    runner.start(L.segment_job(starting, phantom.pet, seed))
    assert starting.asked.wait(10) and runner.running            # start() returned at once
    runner.cancel()                                             # Cancel while the service is still starting
    starting.release.set()
    drain(runner)
    assert got == ["cancelled"] and client.calls == []

    cold = [float(v) for v in phantom.pet.index_to_world([40, 40, 60], space="ras")]
    errors = []
    runner.failed.connect(errors.append)
    runner.start(L.segment_job(L.ServiceConnector(L.Settings()), phantom.pet, cold))
    drain(runner)
    assert len(errors) == 1 and isinstance(errors[0], petar.InputError) and "nothing hot" in str(errors[0])


def test_settings_for_a_click_keep_the_service_and_drop_the_engines():
    s = L.Settings(service_mode="local", python_executable="/opt/py", report_engine="petar",
                   grounding_engine="contextual", device="cuda")
    c = s.for_segmentation()
    assert (c.service_mode, c.python_executable, c.device) == ("local", "/opt/py", "cuda")
    assert (c.report_engine, c.grounding_engine) == ("template", "rule") and s.report_engine == "petar"
    assert not L.Settings(report_engine="petar").validate()[0]
    assert L.Settings(report_engine="petar").for_segmentation().validate() == (True, "")
    assert not L.Settings(service_mode="remote", service_url="gpu").for_segmentation().validate()[0]
    assert deps.plan_dependencies(c, ["fastapi"], ["transformers>=5"], lambda r: False).requirements == []
    c.python_executable = ""
    plan = deps.plan_dependencies(c, ["fastapi"], ["transformers>=5"], lambda r: False)
    assert plan.requirements == ["fastapi"] and not plan.needs_pytorch_extension
