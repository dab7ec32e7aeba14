"""The inference service end to end: a real uvicorn server on a random loopback port and the real client.

Every endpoint; results equal the in-process calls; volumes uploaded once (re-sent when changed or evicted);
jobs with progress, streaming and cancel (PETAR-4B tiny checkpoint); queue full → 503; 401 / 413 / 400 / 403;
a crashing job and an OOM job next to succeeding ones; 8 concurrent clients; launch() and the CLI's bind rule.
"""
import http.client
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import petar  # noqa: E402
from conftest import assert_one_line_error  # noqa: E402
from petar.lesion import click_segment, measurement_document  # noqa: E402
from petar.service import AuthError, Client, JobCancelled, ServiceBusy, ServiceError, ServiceInputError  # noqa: E402
from petar.service import codec  # noqa: E402
from petar.service.server import ServerThread, create_app  # noqa: E402
from petar.volume import Volume  # noqa: E402

TOKEN = "test-token-0123456789"
TINY = Path(__file__).parent / "data" / "petar_tiny_a"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, small_phantom):
    root = tmp_path_factory.mktemp("data_root")
    small_phantom.write(root)
    return root


@pytest.fixture(scope="module")
def server(data_root):
    srv = ServerThread(create_app(token=TOKEN, data_root=data_root, max_body_mb=4, queue_size=4)).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    c = Client(server.url, token=TOKEN, timeout=60)
    yield c
    c.close()


def _raw(server, method, path, body=None, headers=None, token=TOKEN):
    conn = http.client.HTTPConnection(server.url.split("//")[1].split(":")[0], int(server.url.rsplit(":", 1)[1]),
                                      timeout=30)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=body, headers=h)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), data


def _lesion_text(t):
    return f"FDG-avid {t['name']}, SUVmax {t['suv_max']:.1f}, image {t['axial_slice']}"


# ---- health, info, auth --------------------------------------------------------------------------------------
def test_health_is_open_and_info_lists_versions_and_limits(server, client):
    assert Client(server.url).health() == {"status": "ok", "petar": petar.__version__}
    info = client.info()
    assert info["versions"]["petar"] == petar.__version__ and info["versions"]["fastapi"]
    assert {"device", "models", "jobs", "volumes"} <= set(info) and info["jobs"]["queue_size"] == 4
    assert info["data_root"] is True


def test_missing_or_wrong_token_is_401_before_the_body_is_read(server):
    for token in (None, "wrong-token"):
        with pytest.raises(AuthError) as e:
            Client(server.url, token=token).info()
        assert e.value.status == 401 and e.value.exit_code == 2
    status, headers, body = _raw(server, "POST", "/volumes", b"x" * 10_000_000, token=None)
    assert status == 401 and "token" in json.loads(body)["error"]
    assert _raw(server, "GET", "/health", token=None)[0] == 200
    assert _raw(server, "GET", "/info", token="Bearer-less")[0] == 401


def test_no_cors_headers(server):
    status, headers, _ = _raw(server, "OPTIONS", "/measure", headers={"Origin": "http://evil.example",
                                                                       "Access-Control-Request-Method": "POST"})
    assert not any(k.lower().startswith("access-control-") for k in headers)


# ---- volumes --------------------------------------------------------------------------------------------------
def test_volume_round_trip_keeps_geometry_exactly(client):
    c, s = np.cos(0.3), np.sin(0.3)
    direction = np.array([[c, -s, 0], [s, c, 0], [0, 0, -1.0]])
    v = Volume(np.random.default_rng(0).random((7, 9, 11)).astype(np.float32), (1.1, 0.9765625, 3.27),
               (-123.456789012345, 45.6000001, -7.1), direction)
    for compress in (True, False):
        client.compress = compress
        back = client.download(client.upload(v))
        assert np.array_equal(back.array, v.array) and back.array.dtype == v.array.dtype
        assert back.spacing == v.spacing and back.origin == v.origin and np.array_equal(back.direction, direction)
    client.compress = False


def test_malformed_nifti_is_400_with_the_reason(server, small_phantom):
    good = codec.encode(small_phantom.pet)
    cases = {b"": "empty", b"not an image at all" * 30: "not a NIfTI", good[: len(good) // 2]: "truncated",
             codec.encode(small_phantom.pet, compress=False)[:-100]: "truncated"}
    nan = small_phantom.pet.copy()
    nan.array[0, 0, 0] = np.nan
    cases[codec.encode(nan)] = "NaN"
    for body, reason in cases.items():
        status, _, answer = _raw(server, "POST", "/volumes", body)
        doc = json.loads(answer)
        assert status == 400 and reason.lower() in doc["error"].lower() and doc["exit_code"] == 2, doc


def test_oversized_body_is_413_by_length_and_by_counting(server, client):
    big = Volume(np.zeros((64, 128, 160), np.float32))             # 5.2 MB raw > 4 MB limit
    with pytest.raises(ServiceInputError) as e:
        client.upload(big)
    assert e.value.status == 413 and "limit" in str(e.value)
    # no Content-Length (chunked): the server counts while reading and stops at the limit
    conn = http.client.HTTPConnection(server.url.split("//")[1].split(":")[0], int(server.url.rsplit(":", 1)[1]))
    conn.request("POST", "/volumes", body=iter([b"\0" * 1_000_000] * 6), encode_chunked=True,
                 headers={"Authorization": f"Bearer {TOKEN}", "Transfer-Encoding": "chunked"})
    assert conn.getresponse().status == 413
    conn.close()


def test_each_volume_is_uploaded_once_and_again_when_changed_or_evicted(server, client, small_phantom,
                                                                         monkeypatch):
    pet, mask = small_phantom.pet.copy(), small_phantom.lesions.copy()
    sent = []
    real = Client.upload
    monkeypatch.setattr(Client, "upload", lambda self, v: sent.append(v) or real(self, v))
    first = client.measure(pet, mask, label=1)
    assert client.measure(pet, mask, label=1) == first and len(sent) == 2
    pet.array[0, 0, 0] += 1.0                                      # changed in place → sent again
    client.measure(pet, mask, label=1)
    assert len(sent) == 3 and sent[-1] is pet
    server_store = server.server.config.app.app.state.service.store
    server_store.delete(codec.volume_key(mask))                    # evicted on the server → re-sent, same answer
    assert client.measure(pet, mask, label=1)["lesions"] == client.measure(pet, mask, label=1)["lesions"]
    assert sent[-1] is mask and len(sent) == 4


def test_server_cache_is_bounded_in_bytes():
    from petar.service.state import VolumeStore

    store = VolumeStore(max_bytes=3000)
    ids = [store.put(Volume(np.full((10, 10, 10), i, np.uint8))) for i in range(5)]
    assert store.stats()["bytes"] <= 3000 and store.stats()["volumes"] == 3
    with pytest.raises(petar.PetarError):
        store.get(ids[0])
    assert store.get(ids[-1]).array[0, 0, 0] == 4


def test_paths_only_inside_the_data_root(server, client, data_root, small_phantom):
    doc = client.measure({"path": "pet.nii.gz"}, {"path": str(data_root / "lesions.nii.gz")}, label=1)
    assert doc == client.measure(small_phantom.pet, small_phantom.lesions, label=1)
    for bad in ("../pet.nii.gz", "/etc/passwd"):
        with pytest.raises(ServiceInputError) as e:
            client.measure({"path": bad}, small_phantom.lesions)
        assert e.value.status == 403 and "data root" in str(e.value)
    with ServerThread(create_app()) as plain:
        with pytest.raises(ServiceInputError) as e:
            Client(plain.url).measure({"path": str(data_root / "pet.nii.gz")}, small_phantom.lesions)
        assert e.value.status == 403 and "--data-root" in str(e.value)


# ---- sync engines -------------------------------------------------------------------------------------------
def test_measure_equals_the_in_process_call(client, small_phantom, data_root):
    ph = small_phantom
    expected = measurement_document(petar.measure(ph.pet, ph.lesions, ct=ph.ct))
    assert client.measure(ph.pet, ph.lesions, ct=ph.ct) == json.loads(json.dumps(expected))
    assert client.measure(str(data_root / "pet.nii.gz"), str(data_root / "lesions.nii.gz"), label=2)["lesions"] \
        == json.loads(json.dumps(measurement_document(petar.measure(ph.pet, ph.lesions, label=2))))["lesions"]
    with pytest.raises(petar.InputError, match="label 99 is not in the mask") as e:
        client.measure(ph.pet, ph.lesions, label=99)
    assert e.value.status == 400


def test_segment_equals_the_in_process_call(client, small_phantom):
    ph = small_phantom
    point = np.array(ph.truth[0]["center_ras"]) + 3.0
    expected = click_segment(ph.pet, point, method="adaptive")
    mask, doc = client.segment(ph.pet, point, method="adaptive")
    assert np.array_equal(mask.array, expected.mask.array) and mask.same_grid(ph.pet)
    assert doc["segmentation"] == json.loads(json.dumps(expected.to_dict()))
    assert doc["lesion"]["voxels"] == int(expected.mask.array.sum())
    with pytest.raises(petar.InputError, match="outside the PET"):
        client.segment(ph.pet, (0, 0, 1e5))
    with pytest.raises(petar.InputError, match="takes no parameter"):
        client.segment(ph.pet, point, bogus=1)


# ---- jobs ----------------------------------------------------------------------------------------------------
def test_template_report_and_rule_grounding_jobs(client, small_phantom):
    ph = small_phantom
    expected = petar.report(ph.pet, ph.ct, ph.lesions).to_dict()
    seen = []
    assert client.report(ph.pet, ph.ct, ph.lesions, on_progress=seen.append) == json.loads(json.dumps(expected))
    assert seen and seen[-1]["status"] == "done"
    t = ph.truth[0]
    doc, mask = client.ground(_lesion_text(t), ph.pet)
    local = petar.ground(_lesion_text(t), ph.pet)
    assert doc["status"] == local.status == "found" and np.array_equal(mask.array, local.mask.array)
    assert doc["lesion"] == json.loads(json.dumps(local.lesion.to_dict()))
    job = client.ground("no hypermetabolic lesion", ph.pet, wait=False)
    assert client.ground_result(client.wait(job, timeout=30))[1] is None
    with pytest.raises(petar.InputError, match="unknown job kind"):
        client.submit("nonsense", {})
    with pytest.raises(ServiceInputError) as e:
        client.progress("0" * 32)
    assert e.value.status == 404


def test_a_crashing_job_fails_alone_and_the_server_keeps_working(client, small_phantom, monkeypatch):
    import petar.grounding.rule as rule

    real = rule.ground_rule

    def sometimes_crash(parsed, pet, **kw):
        if parsed.suv_max == 42.0:
            raise ZeroDivisionError("synthetic crash")
        return real(parsed, pet, **kw)

    monkeypatch.setattr(rule, "ground_rule", sometimes_crash)
    ph = small_phantom
    texts = [_lesion_text(ph.truth[0]), "lesion SUVmax 42.0, image 30", _lesion_text(ph.truth[1])]
    jobs = [client.ground(t, ph.pet, wait=False) for t in texts]
    assert client.wait(jobs[0], 30)["status"] == "found"
    with pytest.raises(ServiceError, match="internal error .ZeroDivisionError: synthetic crash") as e:
        client.wait(jobs[1], 30)
    assert e.value.exit_code == 1
    assert client.wait(jobs[2], 30)["status"] == "found"
    assert client.health()["status"] == "ok"


@pytest.fixture(scope="module")
def tiny_ok():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return {"model": str(TINY), "device": "cpu", "dtype": "fp32"}


def test_petar_report_streams_tokens_and_cancel_stops_generation(client, small_phantom, tiny_ok):
    ph = small_phantom
    done = client.report(ph.pet, ph.ct, ph.lesions, label=1, engine="petar", max_new_tokens=4, **tiny_ok)
    assert done["engine"] == "petar" and done["findings"][0]["tokens"] <= 4
    assert any(m["engine"] == "petar" and m["model"]["id"] == str(TINY) for m in client.info()["models"])
    job = client.report(ph.pet, ph.ct, ph.lesions, label=1, engine="petar", max_new_tokens=3000, wait=False,
                        **tiny_ok)
    deadline = time.monotonic() + 60
    doc = client.progress(job)
    while doc["tokens"] < 5 and time.monotonic() < deadline:
        doc = client.progress(job, since=doc["version"], wait_s=1)
    assert doc["status"] == "running" and doc["stage"] == "generating" and doc["text"]["1"]
    t = time.monotonic()
    client.cancel(job)
    with pytest.raises(JobCancelled):
        client.wait(job, timeout=30)
    assert time.monotonic() - t < 5
    final = client.progress(job)
    assert final["status"] == "cancelled" and final["tokens"] < 3000 and final["result"] is None


def test_gpu_oom_fails_the_job_with_advice(client, small_phantom, tiny_ok, monkeypatch):
    import petar.report.petar_engine as engine

    def oom(*a, **k):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 8 GiB total; of which "
                           "120.00 MiB is free)")

    monkeypatch.setattr(engine, "petar_findings", oom)
    with pytest.raises(petar.errors.DeviceMemoryError, match="--quantize 4bit"):
        client.report(small_phantom.pet, small_phantom.ct, small_phantom.lesions, engine="petar", timeout=60,
                      **tiny_ok)
    assert client.report(small_phantom.pet, small_phantom.ct, small_phantom.lesions, label=1)["findings"]


def test_full_queue_is_503_with_retry_after(small_phantom, tiny_ok):
    ph = small_phantom
    with ServerThread(create_app(queue_size=1)) as srv:
        c = Client(srv.url)
        slow = c.report(ph.pet, ph.ct, ph.lesions, label=1, engine="petar", max_new_tokens=3000, wait=False,
                        **tiny_ok)
        doc = c.progress(slow)
        while doc["status"] == "queued":
            doc = c.progress(slow, since=doc["version"], wait_s=1)
        waiting = c.report(ph.pet, ph.ct, ph.lesions, wait=False)
        with pytest.raises(ServiceBusy) as e:
            c.report(ph.pet, ph.ct, ph.lesions, wait=False)
        assert e.value.status == 503 and e.value.retry_after >= 1
        assert c.cancel(waiting)["status"] == "cancelled"
        c.cancel(slow)
        with pytest.raises(JobCancelled):
            c.wait(slow, timeout=30)
        assert c.report(ph.pet, ph.ct, ph.lesions, label=1)["findings"]


# ---- concurrency ---------------------------------------------------------------------------------------------
def test_eight_concurrent_clients_get_their_own_results(server, small_phantom):
    ph = small_phantom
    t = ph.truth[0]
    pets = [Volume.from_array(ph.pet.array * (1.0 + 0.05 * i), like=ph.pet) for i in range(8)]
    expected = [measurement_document(petar.measure(p, ph.lesions, label=1))["lesions"][0]["suv_max"] for p in pets]
    results, errors = {}, []

    def work(i):
        try:
            with Client(server.url, token=TOKEN, timeout=60) as c:
                out = []
                for _ in range(3):
                    out.append(c.measure(pets[i], ph.lesions, label=1)["lesions"][0]["suv_max"])
                    mask, doc = c.segment(pets[i], t["center_ras"], method="fixed", threshold=2.0)
                    out.append(doc["segmentation"]["suv_max"])
                    assert mask.array.sum() == doc["lesion"]["voxels"]
                results[i] = out
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    assert sorted(results) == list(range(8))
    for i, out in results.items():
        assert out[0::2] == [expected[i]] * 3
        assert all(abs(v - expected[i]) < 1e-3 for v in out[1::2]), (i, out)


def test_logs_hold_no_texts_or_file_names(client, small_phantom, data_root, caplog):
    with caplog.at_level(logging.INFO, logger="petar.service"):
        client.ground("PATIENTNAME_DOE lesion SUVmax 5.3, image 36", small_phantom.pet)
        client.measure({"path": "pet.nii.gz"}, {"path": "lesions.nii.gz"}, label=1)
        with pytest.raises(petar.InputError, match="not found"):
            client.measure({"path": "secret_patient_file.nii.gz"}, small_phantom.lesions)
    text = caplog.text
    assert "POST /measure" in text
    for secret in ("PATIENTNAME_DOE", "pet.nii.gz", "secret_patient_file", str(data_root)):
        assert secret not in text


# ---- launch and the CLI --------------------------------------------------------------------------------------
def test_launch_starts_and_stops_a_subprocess_server(tmp_path, monkeypatch, small_phantom):
    from petar.service import launch

    monkeypatch.setenv("PETAR_HOME", str(tmp_path))
    with launch(port=0) as svc:
        assert svc.running() and svc.url.startswith("http://127.0.0.1:")
        c = svc.client()
        assert c.health()["status"] == "ok"
        with pytest.raises(AuthError):
            Client(svc.url).info()
        assert c.measure(small_phantom.pet, small_phantom.lesions, label=1)["lesions"][0]["label"] == 1
        assert list((tmp_path / "run").glob("serve-*.json"))
        pid = svc.pid
    assert svc.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not list((tmp_path / "run").glob("serve-*.json"))


def test_a_launched_server_exits_when_its_parent_dies(tmp_path):
    env = dict(os.environ, PETAR_HOME=str(tmp_path))
    code = ("import os, sys; from petar.service import launch; s = launch(port=0); "
            "print(s.pid, flush=True); os._exit(0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(pid, 9)
        pytest.fail("the orphaned server kept running")
    assert not list((tmp_path / "run").glob("serve-*.json"))


def test_serve_refuses_a_public_address_without_token(cli, monkeypatch):
    monkeypatch.delenv("PETAR_SERVICE_TOKEN", raising=False)
    assert_one_line_error(cli("serve", "--host", "0.0.0.0"), "--token")
    assert_one_line_error(cli("serve", "--queue-size", "0"), "--queue-size")


def test_masks_travel_as_their_foreground_box_and_rebuild_exactly():
    """codec.crop_to_foreground + embed reproduce the full mask and its geometry (empty masks too)."""
    import numpy as np

    from petar import Volume
    from petar.service import codec

    arr = np.zeros((30, 20, 25), np.uint8)
    arr[10:14, 3:9, 20:25] = 1
    vol = Volume(arr, (2.0, 3.0, 4.0), (-10.0, 5.0, 100.0), np.diag([1.0, -1.0, 1.0]))
    block, offset = codec.crop_to_foreground(vol)
    assert block.shape == (4, 6, 5) and offset == (10, 3, 20)
    back = codec.embed(codec.decode(codec.encode(block, True)), offset, vol.shape)
    assert back.same_grid(vol) and np.array_equal(back.array, arr)
    empty = Volume.from_array(np.zeros_like(arr), like=vol)
    block, offset = codec.crop_to_foreground(empty)
    assert not codec.embed(block, offset, vol.shape, like=vol).array.any()
