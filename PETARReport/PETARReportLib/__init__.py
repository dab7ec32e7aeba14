"""Slicer-free logic shared by the PETARReport and PETARGrounding modules.

Nothing here imports slicer, qt, vtk or ctk: the module files inject Qt-backed pieces (QSettings backend, QTimer
polling, dialogs) and these classes are tested with plain pytest (Testing/slicer/).
"""
from .deps import DependencyPlan, ensure_local_petar, plan_dependencies
from .geometry import ijk_to_ras_from_volume, ras_to_lps, lps_to_ras, volume_from_ijk_to_ras
from .jobs import ground_job, report_job, segment_job, segment_progress
from .report_results import export_json, export_text, findings_rows, TABLE_COLUMNS
from .runner import EngineRunner, ServiceConnector, Signal
from .settings import DictBackend, Settings
from .state import RunState, StateMachine
from .widget_jobs import JobControls, ParameterNodeBinding

__all__ = ["DependencyPlan", "DictBackend", "EngineRunner", "JobControls", "ParameterNodeBinding", "RunState",
           "ServiceConnector", "Settings", "Signal", "StateMachine", "TABLE_COLUMNS", "export_json", "export_text",
           "findings_rows", "ensure_local_petar", "ground_job", "ijk_to_ras_from_volume", "lps_to_ras",
           "plan_dependencies", "ras_to_lps", "report_job", "segment_job", "segment_progress",
           "volume_from_ijk_to_ras"]
