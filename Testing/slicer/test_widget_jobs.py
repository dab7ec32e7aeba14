"""PETARReportLib.widget_jobs (the job plumbing both module widgets share) and EngineRunner.abandon, without Slicer:
plain objects stand in for the Qt widgets, the QTimer and the error dialog."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import slicer_paths  # noqa: F401  (sys.path for the module Lib packages)

import PETARGroundingLib as G
import PETARReportLib as L


class Timer:
    def __init__(self):
        self.active = False
        self.starts = 0

    def start(self):
        self.active, self.starts = True, self.starts + 1

    def stop(self):
        self.active = False


def widgets():
    return SimpleNamespace(button=SimpleNamespace(text="", enabled=True),
                           bar=SimpleNamespace(minimum=0, maximum=100, value=0, visible=False),
                           status=SimpleNamespace(text=""), inputs=SimpleNamespace(enabled=True))


def controls(progress_view=None, **kw):
    w, errors, timer = widgets(), [], Timer()
    state, runner = L.StateMachine("Localize"), L.EngineRunner()
    jobs = L.JobControls(state, runner, timer, w.button, w.bar, w.status, busy_disabled=[w.inputs],
                         progress_view=progress_view, show_error=errors.append, failure_text="Localization failed: ",
                         **kw)
    jobs.on_state_changed()
    return jobs, w, errors, timer


def blocking_job(progress_docs=(), hook=None):
    """A job that reports `progress_docs`, then runs until asked to stop (then returns "late")."""
    reported = threading.Event()

    def job(progress, should_stop, set_cancel_hook):
        if hook is not None:
            set_cancel_hook(hook)
        for doc in progress_docs:
            progress(doc)
        reported.set()
        while not should_stop():
            threading.Event().wait(0.005)
        return "late"

    return job, reported


def test_job_controls_run_a_job_to_its_own_callback_with_a_determinate_or_busy_bar():
    jobs, w, errors, timer = controls(progress_view=G.ground_progress)
    assert (w.button.text, w.bar.visible, w.inputs.enabled) == ("Localize", False, True)
    assert jobs.click() is True                                 # idle: the caller starts a job
    finished, progress = [], []
    jobs.start(lambda p, s, h: (p({"stage": "grounding", "fraction": 0.25}), "mask")[1], needs_service_start=True,
               on_finished=finished.append, on_progress=progress.append)
    assert timer.active and w.button.text == "Cancel" and w.bar.visible and not w.inputs.enabled
    assert (w.bar.minimum, w.bar.maximum) == (0, 0) and w.status.text == "starting"   # no fraction yet: busy bar
    jobs.runner.wait(10)
    jobs.runner.poll()
    assert progress == [{"stage": "grounding", "fraction": 0.25}] and finished == ["mask"]
    assert not timer.active and not jobs.state.busy and w.button.text == "Localize" and w.inputs.enabled
    assert (w.bar.maximum, w.bar.value, w.status.text) == (100, 100, "done")
    assert errors == []


def test_job_controls_cancel_and_failure_texts():
    jobs, w, errors, timer = controls()
    hooked = threading.Event()
    job, reported = blocking_job([{"stage": "grounding"}], hook=hooked.set)
    cancelled = []
    jobs.start(job, on_cancelled=lambda: cancelled.append(True))
    assert reported.wait(10)
    assert jobs.click() is False and w.button.text == "Cancelling…" and not w.button.enabled
    assert jobs.click() is False                                # a second press while cancelling is ignored
    jobs.runner.wait(10)
    jobs.runner.poll()
    assert hooked.wait(5) and cancelled == [True] and w.status.text == "cancelled" and not timer.active
    assert not jobs.state.busy and w.button.text == "Localize"

    jobs.start(lambda p, s, h: (_ for _ in ()).throw(ValueError("no seed")), failure_text="Could not segment: ")
    jobs.runner.wait(10)
    jobs.runner.poll()
    assert errors == ["Could not segment: no seed"] and w.status.text == "failed" and not jobs.state.busy
    jobs.fail(RuntimeError("bad PET"))                          # raised while preparing a job: default text
    assert errors[-1] == "Localization failed: bad PET"


def test_job_controls_reset_abandons_the_running_job_and_drops_its_result():
    jobs, w, errors, timer = controls()
    hooked = threading.Event()
    job, reported = blocking_job(hook=hooked.set)
    finished = []
    jobs.start(job, needs_service_start=True, on_finished=finished.append)
    assert reported.wait(10)
    jobs.reset()                                                # scene close
    assert not jobs.state.busy and not jobs.runner.running and not timer.active
    assert w.button.text == "Localize" and w.inputs.enabled and not w.bar.visible and w.status.text == ""
    assert hooked.wait(5)                                       # a service job is cancelled on the server
    jobs.runner.wait(10)
    assert jobs.runner.poll() == 0 and finished == [] and errors == []
    jobs.start(lambda p, s, h: "next", on_finished=finished.append)   # the runner is free at once
    jobs.runner.wait(10)
    jobs.runner.poll()
    assert finished == ["next"]


def test_runner_abandon_keeps_late_events_from_the_next_job():
    runner = L.EngineRunner()
    got = []
    runner.finished.connect(got.append)
    assert runner.abandon() is False                            # nothing running
    release = threading.Event()
    runner.start(lambda p, s, h: (release.wait(10), "old")[1])  # ignores should_stop: ends when released
    assert runner.abandon() is True and not runner.running
    runner.start(lambda p, s, h: (release.wait(10), "new")[1])
    release.set()
    runner.wait(10)
    runner.poll()
    assert got == ["new"]


def test_click_lesion_job_keeps_the_widget_busy_and_cancels_or_reports_petar_errors():
    """PETARReport's Click lesion: segment_job on the runner through JobControls (its own busy bar), the click button
    disabled while busy, the mask handed to on_finished only on poll(); Cancel drops it; errors show petar's text."""
    import petar

    viewed = []
    jobs, w, errors, timer = controls(progress_view=lambda doc: (viewed.append(doc), (7, "report view"))[1])
    click_button = SimpleNamespace(enabled=True)
    jobs.busy_disabled.append(click_button)
    pet = object()                                              # captured on the main thread, passed through as is
    added, release = [], threading.Event()

    class Connector:
        def client(self):
            release.wait(10)
            return None

    job = L.segment_job(Connector(), pet, [0.0, 0.0, 0.0], segment=lambda pet, point, **kw: ("mask", point, kw))
    jobs.start(job, needs_service_start=True, progress_view=L.segment_progress, on_finished=added.append,
               failure_text="Click segmentation failed: ")
    assert jobs.state.busy and not click_button.enabled and not w.inputs.enabled and w.button.text == "Cancel"
    assert (w.bar.maximum, w.status.text) == (0, "starting")    # the job's own view: a busy bar
    release.set()
    jobs.runner.wait(10)
    assert added == []
    jobs.runner.poll()
    assert added == [("mask", [0.0, 0.0, 0.0], {"space": "ras", "method": "percent"})]
    assert click_button.enabled and not jobs.state.busy and w.status.text == "done"

    release.clear()
    jobs.start(L.segment_job(Connector(), pet, [1.0, 2.0, 3.0], segment=lambda *a, **k: "late"),
               progress_view=L.segment_progress, on_finished=added.append)
    assert jobs.click() is False                                # the action button is Cancel while busy
    release.set()
    jobs.runner.wait(10)
    jobs.runner.poll()
    assert len(added) == 1 and w.status.text == "cancelled" and click_button.enabled and errors == []

    def cold(pet, point, **kw):
        raise petar.InputError("nothing hot near the click: the hottest SUV within 7 mm of the click is 1.15")

    jobs.start(L.segment_job(Connector(), pet, [1.0, 2.0, 3.0], segment=cold), progress_view=L.segment_progress,
               failure_text="Click segmentation failed: ")
    jobs.runner.wait(10)
    jobs.runner.poll()
    assert errors == ["Click segmentation failed: nothing hot near the click: the hottest SUV within 7 mm of the "
                      "click is 1.15"] and w.status.text == "failed" and click_button.enabled
    assert viewed == []                                         # click jobs never used the report view
    jobs.start(lambda p, s, h: (p({"stage": "measuring"}), "r")[1], on_finished=added.append)
    jobs.runner.wait(10)
    jobs.runner.poll()
    assert viewed == [{"stage": "starting"}, {"stage": "measuring"}] and added[-1] == "r"   # the controls' own view


def test_parameter_node_binding_connects_once_and_lets_go():
    class Node:
        def __init__(self):
            self.pet, self.gui = None, []

        def connectGui(self, ui):
            self.gui.append(ui)
            return f"tag{len(self.gui)}"

        def disconnectGui(self, tag):
            self.gui.remove(ui)
            self.released = tag

    made, ui = [], object()

    def get_node():
        made.append(Node())
        return made[-1]

    binding = L.ParameterNodeBinding(get_node, ui, prepare=lambda n: setattr(n, "pet", "first volume"))
    node = binding.connect()
    assert binding.connect() is node and len(made) == 1 and node.gui == [ui] and node.pet == "first volume"
    binding.disconnect()                                        # StartCloseEvent
    assert binding.node is None and node.gui == [] and node.released == "tag1"
    binding.disconnect()                                        # twice is harmless
    assert binding.connect() is made[1] and made[1].gui == [ui]  # EndCloseEvent / enter: a new node


# members JobControls reads or sets on each widget it is given (kept in step with widget_jobs.py)
_USED = {"button": {"text", "enabled"}, "progress_bar": {"minimum", "maximum", "value", "visible"},
         "status_label": {"text"}, "busy_disabled": {"enabled"}}


def test_widgets_given_to_job_controls_have_the_members_it_uses():
    """JobControls touches widgets the static self.ui check cannot see: check what each module passes it."""
    import ast

    import pytest

    from slicer_api_index import api, qt_members
    from test_slicer_static import MODULES, QT_MEMBERS, QWIDGET, ROOT, _ui_widgets

    def members(cls):
        return QWIDGET | (qt_members(cls) if cls in api()["qt"]["classes"] else QT_MEMBERS.get(cls, set()))

    problems, users = [], set()
    for module in MODULES:                      # every module that uses JobControls (at least these two do)
        path = ROOT / module / f"{module}.py"
        if not path.is_file():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "JobControls"):
                continue
            users.add(module)
            widgets = _ui_widgets(module)
            given = dict(zip(("state", "runner", "timer", "button", "progress_bar", "status_label"), call.args))
            given.update({k.arg: k.value for k in call.keywords})
            for role, used in _USED.items():
                if role not in given:
                    continue
                nodes = given[role].elts if role == "busy_disabled" else [given[role]]
                for node in nodes:
                    name = ast.unparse(node)
                    if not name.startswith("self.ui."):
                        pytest.fail(f"{module}: {role} is not a self.ui widget: {name}")
                    cls = widgets[name.split(".")[2]].get("class")
                    problems += [f"{module}: {name}.{m} ({cls})" for m in sorted(used - members(cls))]
    assert {"PETARReport", "PETARGrounding"} <= users
    assert problems == []
