"""What must be installed into Slicer's Python, and installing it only after the user agreed.

* in-process (template, rule, click segmentation), remote service, or a local service run by another Python:
  nothing — `petar` ships inside the extension and needs only numpy, SimpleITK and pydicom, which Slicer has.
* a local service run by Slicer's own Python: the service requirements (Resources/requirements-service.txt:
  fastapi, uvicorn) and, for PETAR-4B, the model requirements without torch (torch comes from the PyTorch
  extension, which picks the CUDA build for the driver).

Never installed or upgraded here: numpy, SimpleITK, torch, requests (Slicer's own builds; replacing them breaks
Slicer or needs a restart). On Slicer >= 5.12 `slicer.packaging.pip_ensure` asks, installs and offers a restart;
on 5.8/5.10 the fallback asks with `confirm(text, details)` and calls `slicer.util.pip_install(one_string)`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

PROTECTED = ("numpy", "simpleitk", "torch", "requests")


def requirement_name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def read_requirements(text: str) -> list[str]:
    """Requirement lines (comments and blanks dropped) without the protected packages."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and requirement_name(line) not in PROTECTED:
            out.append(line)
    return out


@dataclass
class DependencyPlan:
    requirements: list = field(default_factory=list)
    reason: str = ""
    needs_pytorch_extension: bool = False

    @property
    def nothing_to_do(self) -> bool:
        return not self.requirements and not self.needs_pytorch_extension


def plan_dependencies(settings, service_requirements: list, model_requirements: list, is_installed) -> DependencyPlan:
    """What Slicer's Python still needs for `settings`; `is_installed(requirement) -> bool` is injected."""
    if settings.service_mode != "local" or settings.python_executable:
        return DependencyPlan(reason="nothing to install: petar ships with the extension")
    wanted = list(service_requirements)
    torch_needed = settings.report_engine == "petar" or settings.grounding_engine == "contextual"
    if torch_needed:
        wanted += model_requirements
    missing = [r for r in wanted if requirement_name(r) not in PROTECTED and not is_installed(r)]
    torch_missing = torch_needed and not is_installed("torch")
    reason = "the local petar service runs in Slicer's Python"
    if torch_missing:
        reason += "; install PyTorch with the PyTorch extension (Extensions Manager) first"
    return DependencyPlan(missing, reason, torch_missing)


def slicer_version_tuple(version_string: str) -> tuple:
    nums = [int(n) for n in re.findall(r"\d+", version_string)[:2]]
    return tuple(nums + [0] * (2 - len(nums)))


def ensure_local_petar(plan: DependencyPlan, slicer_version: tuple, confirm, pip_ensure=None,
                       pip_install=None) -> bool:
    """Install `plan.requirements` after the user agreed. True when everything is (now) installed.

    `pip_ensure` is `slicer.packaging.pip_ensure` (Slicer >= 5.12); `pip_install` is `slicer.util.pip_install`
    (the 5.8/5.10 one-argument form); `confirm(text, details) -> bool`. Errors propagate: the widget shows them.
    """
    if plan.needs_pytorch_extension:
        raise RuntimeError("PyTorch is not installed in Slicer: install the PyTorch extension from the Extensions "
                           "Manager (or run the service with another Python, or use a remote service)")
    if not plan.requirements:
        return True
    if tuple(slicer_version) >= (5, 12) and pip_ensure is not None:
        pip_ensure(plan.requirements, skip_packages=["SimpleITK", "numpy", "torch", "requests"],
                   requester="PETAR", prompt_install=True)
        return True
    details = "\n".join(plan.requirements)
    if not confirm(f"PETAR needs these Python packages in Slicer ({plan.reason}). Install them now?", details):
        return False
    if pip_install is None:
        raise RuntimeError("no pip installer was given")
    pip_install(" ".join(_quote(r) for r in plan.requirements))
    return True


def _quote(req: str) -> str:
    return f'"{req}"' if any(c in req for c in "<>; ") else req
