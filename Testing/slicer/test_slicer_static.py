"""Static checks of the Slicer modules (no Slicer needed).

Rules (what is checked, and how far):
* every .py under the module folders (MODULES: PETARReport/, PETARGrounding/, PETARStudy/) parses with Python 3.10
  grammar (ast feature_version (3, 10));
* `from slicer.<module> import name` and `slicer.util.X` / `slicer.packaging.X`: X exists in that module's index;
* `slicer.<vtkMRML…|vtkSlicer…|vtkSegment…|qMRML…|qSlicer…>` classes exist, and `slicer.<Class>.<Member>` is a
  method or enum value of that class; `slicer.mrmlScene.<Member>` is a vtkMRMLScene member; `slicer.app.<name>`
  a qSlicerCoreApplication/qSlicerApplication member; other `slicer.<name>` roots must be in KNOWN_ROOTS;
* every VTK-style call `obj.Method(...)` (capitalised name, obj not one of our own packages or qt/vtk) names a
  method of some Slicer VTK class (the receiver's type is not inferred: this is a name-exists check);
* `.ui` files: every widget class is a Slicer/CTK class with a Designer plugin in the index or a Qt widget in
  QT_WIDGETS; every property set on a Slicer/CTK widget exists in the index (Qt's own classes are not in the
  index, so their properties are checked against QT_PROPERTIES);
* `self.ui.<name>` names an objectName of the module's .ui, and `self.ui.<name>.<member>` is a member of that
  widget's class (index for Slicer/CTK classes, plus QT_MEMBERS for Qt's own classes and QWidget basics);
* CMakeLists: every file a module imports from its Lib package and every `resourcePath(...)` file is listed, and
  every listed file exists.
"""
from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import slicer_paths  # noqa: F401  (sys.path for the module Lib packages)

from slicer_api_index import all_vtk_method_names, api, python_names, qt_members, vtk_members

ROOT = Path(__file__).resolve().parents[2]
MODULES = {"PETARReport": "PETARReportLib", "PETARGrounding": "PETARGroundingLib", "PETARStudy": "PETARStudyLib"}
PY_FILES = sorted(p for m in MODULES for p in (ROOT / m).rglob("*.py"))
KNOWN_ROOTS = {"util", "packaging", "mrmlScene", "app", "ScriptedLoadableModule", "parameterNodeWrapper", "i18n"}
OWN = {"qt", "vtk", "slicer", "PETARReportLib", "PETARGroundingLib", "PETARStudyLib", "mrml", "deps", "os", "sys",
       "json", "importlib", "logging", "np", "petar"}
QWIDGET = {"connect", "enabled", "visible", "toolTip", "setVisible", "setEnabled", "setMRMLScene"}
QT_MEMBERS = {
    "QPushButton": {"text", "clicked"}, "QLabel": {"text"}, "QProgressBar": {"value", "minimum", "maximum"},
    "QComboBox": {"currentText", "currentIndex", "currentData", "clear", "addItem", "findData", "findText"},
    "QLineEdit": {"text"}, "QSpinBox": {"value"}, "QPlainTextEdit": {"plainText", "setPlainText"},
    "QTableWidget": {"clear", "setColumnCount", "setRowCount", "setHorizontalHeaderLabels", "setItem",
                     "cellClicked"},
    "QListWidget": {"clear", "addItem", "currentRow", "currentRowChanged"},
    "QCheckBox": {"text", "checked", "toggled"}, "QRadioButton": {"text", "checked"}, "QGroupBox": {"title"},
}
QT_WIDGETS = set(QT_MEMBERS)
QT_PROPERTIES = {"text", "toolTip", "value", "minimum", "maximum", "placeholderText", "readOnly", "echoMode",
                 "editTriggers", "selectionBehavior", "orientation", "title", "checked", "editable", "wordWrap",
                 "format"}


def _tree(path):
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 10))


def _chain(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


def _outermost_attributes(tree):
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and id(n) not in inner]


@pytest.mark.parametrize("path", PY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_parses_for_python_3_10(path):
    _tree(path)


def _slicer_problems(path):
    problems = []
    tree = _tree(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("slicer."):
            known = python_names(node.module)
            problems += [f"{node.module}.{a.name}" for a in node.names if a.name not in known]
    vtk_classes, qt_classes = api()["vtk"]["classes"], api()["qt"]["classes"]
    for node in _outermost_attributes(tree):
        chain = _chain(node)
        if not chain or chain[0] != "slicer" or len(chain) < 2:
            continue
        root, rest = chain[1], chain[2:]
        if root in ("util", "packaging"):
            if rest and rest[0] not in python_names(f"slicer.{root}"):
                problems.append(".".join(chain))
        elif root in vtk_classes:
            if rest and rest[0] not in vtk_members(root):
                problems.append(".".join(chain))
        elif root in qt_classes:
            if rest and rest[0] not in qt_members(root):
                problems.append(".".join(chain))
        elif root == "mrmlScene":
            if rest and rest[0] not in vtk_members("vtkMRMLScene"):
                problems.append(".".join(chain))
        elif root == "app":
            if rest and rest[0] not in qt_members("qSlicerApplication") | qt_members("qSlicerCoreApplication"):
                problems.append(".".join(chain))
        elif root not in KNOWN_ROOTS:
            problems.append(".".join(chain))
    uses_slicer = any(isinstance(n, ast.Import) and any(a.name == "slicer" for a in n.names) for n in ast.walk(tree))
    if not uses_slicer:
        return problems
    local = set(OWN)
    for n in ast.walk(tree):
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            local |= {(a.asname or a.name).split(".")[0] for a in n.names}
        elif isinstance(n, ast.ClassDef):
            local.add(n.name)
    known_methods = all_vtk_method_names()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr[:1].isupper():
            chain = _chain(node.func.value) or []
            if chain[:1] and chain[0] in local or chain[:2] == ["self", "ui"]:
                continue
            if node.func.attr not in known_methods:
                problems.append(f"{ast.unparse(node.func)} (line {node.lineno})")
    return problems


@pytest.mark.parametrize("path", PY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_slicer_and_mrml_names_exist_in_5_12_api(path):
    assert _slicer_problems(path) == []


def _ui_widgets(module):
    root = ET.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui").getroot()
    return {w.get("name"): w for w in root.iter("widget")}


@pytest.mark.parametrize("module", MODULES)
def test_ui_classes_and_properties_exist(module):
    qt_classes = api()["qt"]["classes"]
    problems = []
    for name, w in _ui_widgets(module).items():
        cls = w.get("class")
        props = [p.get("name") for p in w.findall("property") if p.get("stdset") != "0"]
        if cls in qt_classes:
            if not qt_classes[cls].get("designer_plugin"):
                problems.append(f"{name}: {cls} has no Designer plugin")
            problems += [f"{name}.{p}" for p in props if p not in qt_members(cls) | QT_PROPERTIES]
        elif cls in QT_WIDGETS:
            problems += [f"{name}.{p}" for p in props if p not in QT_PROPERTIES]
        else:
            problems.append(f"{name}: unknown widget class {cls}")
    assert problems == []


@pytest.mark.parametrize("module", MODULES)
def test_ui_objectnames_and_members_used_by_code_exist(module):
    widgets = _ui_widgets(module)
    qt_classes = api()["qt"]["classes"]
    problems = []
    for node in _outermost_attributes(_tree(ROOT / module / f"{module}.py")):
        chain = _chain(node)
        if not chain or chain[:2] != ["self", "ui"] or len(chain) < 3:
            continue
        name = chain[2]
        if name not in widgets:
            problems.append(f"self.ui.{name}: no such objectName in {module}.ui")
            continue
        if len(chain) > 3:
            cls = widgets[name].get("class")
            members = QWIDGET | (qt_members(cls) if cls in qt_classes else QT_MEMBERS.get(cls, set()))
            if chain[3] not in members:
                problems.append(f"self.ui.{name}.{chain[3]} ({cls})")
    assert problems == []


def _cmake_listed(module):
    text = (ROOT / module / "CMakeLists.txt").read_text(encoding="utf-8").replace("${MODULE_NAME}", module)
    return set(re.findall(r"^\s+([\w./-]+\.(?:py|png|ui|txt))\s*$", text, re.M))


@pytest.mark.parametrize("module", MODULES)
def test_cmakelists_lists_every_imported_file_and_resource(module):
    listed = _cmake_listed(module)
    assert f"{module}.py" in listed
    missing = [f for f in listed if not (ROOT / module / f).is_file()]
    assert missing == [], f"listed but absent: {missing}"
    lib = MODULES[module]
    on_disk = {str(p.relative_to(ROOT / module)) for p in (ROOT / module / lib).glob("*.py")}
    assert on_disk - listed == set(), "Lib files not listed in CMakeLists"
    needed = set()
    for path in [ROOT / module / f"{module}.py", *(ROOT / module / lib).glob("*.py")]:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "resourcePath":
                needed.add("Resources/" + node.args[0].value if isinstance(node.args[0], ast.Constant) else "")
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in MODULES.values():
                owner = next(m for m, l in MODULES.items() if l == node.module.split(".")[0])
                sub = node.module.split(".")[1:] or []
                targets = [sub] if sub else [[a.name] for a in node.names]
                for t in targets:
                    f = "/".join([node.module.split(".")[0], *t]) + ".py"
                    if (ROOT / owner / f).is_file():
                        assert f in _cmake_listed(owner), f"{f} imported by {path.name} but not in {owner}/CMakeLists"
    needed.add("Resources/requirements-service.txt") if module == "PETARReport" else None
    assert needed - listed == set()
    assert f"Resources/Icons/{module}.png" in listed


def test_top_level_cmakelists_is_a_slicer_extension():
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(rf"set\({key} ", text), key
    assert re.search(r'set\(EXTENSION_DEPENDS "NA"\)', text)
    for module in MODULES:
        assert f"add_subdirectory({module})" in text
        assert "WITH_GENERIC_TESTS" in (ROOT / module / "CMakeLists.txt").read_text()
        assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in (ROOT / module / "CMakeLists.txt").read_text()
    assert "petar/*.py" in text and "ctkMacroCompilePythonScript" in text


def test_api_index_copy_is_the_5_12_index():
    assert "v5.12" in str(api()["sources"])
    assert (ROOT / "Testing" / "data" / "slicer_api" / "README.md").is_file()
