"""Strict fakes of the Qt/CTK widgets the modules use, built from their .ui files (see fake_slicer.py)."""
from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import os
import sys
import types
import xml.etree.ElementTree as ET

import numpy as np

from slicer_api_index import api

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))



# ---- strict base -------------------------------------------------------------------------------------------------
class Strict:
    """Attributes must be declared (class attribute, property or method); private `_names` are free."""

    def __setattr__(self, name, value):
        if not name.startswith("_") and not hasattr(type(self), name):
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r} (fake)")
        object.__setattr__(self, name, value)


def _call_slot(slot, args):
    """PythonQt calls a Python slot with as many of the signal's arguments as it takes."""
    try:
        sig = inspect.signature(slot)
    except (TypeError, ValueError):
        return slot(*args)
    params = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()):
        return slot(*args)
    return slot(*args[:len(params)])


class QObject(Strict):
    SIGNALS: tuple = ()

    def __init__(self, parent=None):
        self._slots = {}
        self._name = ""

    def _all_signals(self):
        return {s for cls in type(self).__mro__ for s in getattr(cls, "SIGNALS", ())}

    def connect(self, signal, slot):
        if signal not in self._all_signals():
            raise AttributeError(f"{type(self).__name__} has no signal {signal!r} (fake)")
        if not callable(slot):
            raise TypeError(f"slot for {signal} is not callable")
        self._slots.setdefault(signal, []).append(slot)
        return True

    def disconnect(self, signal, slot=None):
        if slot is None:
            self._slots.pop(signal, None)
        else:
            self._slots.get(signal, []).remove(slot)

    def emit(self, signal, *args):
        for slot in list(self._slots.get(signal, [])):
            _call_slot(slot, args)

    def objectName(self):
        return self._name


class QLayout(Strict):
    def __init__(self):
        self._widgets = []

    def addWidget(self, widget, *args):
        self._widgets.append(widget)

    def addStretch(self, *args):
        pass


class QWidget(QObject):
    enabled = True
    visible = True
    toolTip = ""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._ui_props = {}
        self._layout = QLayout()

    def setEnabled(self, value):
        self.enabled = bool(value)

    def setVisible(self, value):
        self.visible = bool(value)

    def layout(self):
        return self._layout


class qMRMLWidget(QWidget):
    SIGNALS = ("mrmlSceneChanged(vtkMRMLScene*)",)

    def setMRMLScene(self, scene):
        self._scene = scene
        self.emit("mrmlSceneChanged(vtkMRMLScene*)", scene)


class QLabel(QWidget):
    text = ""
    wordWrap = False


class QAbstractButton(QWidget):
    SIGNALS = ("clicked(bool)", "clicked()", "toggled(bool)")
    text = ""

    def click(self):
        """A user click: refused (AssertionError) on a disabled or hidden button."""
        assert self.enabled, f"{self._name} is disabled: the user cannot click it"
        assert self.visible, f"{self._name} is hidden: the user cannot click it"
        self.emit("clicked(bool)", False)
        self.emit("clicked()")


class QPushButton(QAbstractButton):
    pass


class ctkCollapsibleButton(QAbstractButton):
    collapsed = False


class QCheckableButton(QAbstractButton):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._checked = False
        self._group = None

    @property
    def checked(self):
        return self._checked

    @checked.setter
    def checked(self, value):
        self.setChecked(value)

    def isChecked(self):
        return self._checked

    def setChecked(self, value):
        value = bool(value)
        if value == self._checked:
            return
        group = self._group
        if not value and group is not None and group._exclusive:
            return                                  # Qt: an exclusive group keeps its checked button
        if value and group is not None and group._exclusive:
            for other in group._buttons:
                if other is not self and other._checked:
                    other._checked = False
                    other.emit("toggled(bool)", False)
        self._checked = value
        self.emit("toggled(bool)", value)

    def click(self):
        super().click()
        if isinstance(self, QRadioButton):
            self.setChecked(True)
        else:
            self.setChecked(not self._checked)


class QCheckBox(QCheckableButton):
    pass


class QRadioButton(QCheckableButton):
    pass


class QButtonGroup(QObject):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._buttons, self._ids, self._exclusive = [], {}, True

    def addButton(self, button, button_id=-1):
        if not isinstance(button, QCheckableButton):
            raise TypeError(f"addButton needs a button, got {button!r}")
        button._group = self
        self._buttons.append(button)
        self._ids[button_id] = button

    def buttons(self):
        return list(self._buttons)

    def button(self, button_id):
        return self._ids.get(button_id)

    def checkedId(self):
        for i, b in self._ids.items():
            if b._checked:
                return i
        return -1

    def setExclusive(self, value):
        self._exclusive = bool(value)

    def exclusive(self):
        return self._exclusive


class QGroupBox(QWidget):
    title = ""


class QPlainTextEdit(QWidget):
    plainText = ""
    placeholderText = ""
    readOnly = False

    def setPlainText(self, text):
        if not isinstance(text, str):
            raise TypeError(f"setPlainText needs a str, got {type(text).__name__}")
        self.plainText = text

    def toPlainText(self):
        return self.plainText


class QLineEdit(QWidget):
    text = ""
    placeholderText = ""
    echoMode = ""


class QSpinBox(QWidget):
    value = 0
    minimum = 0
    maximum = 99


class QProgressBar(QWidget):
    value = 0
    minimum = 0
    maximum = 100
    format = ""


class QComboBox(QWidget):
    SIGNALS = ("currentIndexChanged(int)", "currentTextChanged(QString)")
    editable = False

    def __init__(self, parent=None):
        super().__init__(parent)
        self._items, self._index, self._edit = [], -1, ""

    def _set_index(self, index):
        if index != self._index:
            self._index = index
            self._edit = self._items[index][0] if index >= 0 else ""
            self.emit("currentIndexChanged(int)", index)

    @property
    def currentIndex(self):
        return self._index

    @currentIndex.setter
    def currentIndex(self, index):
        self._set_index(int(index) if 0 <= int(index) < len(self._items) else -1)

    @property
    def currentText(self):
        if self.editable:
            return self._edit
        return self._items[self._index][0] if self._index >= 0 else ""

    @currentText.setter
    def currentText(self, text):
        """Qt's setCurrentText: editable -> the edit text; otherwise selects a matching item (or nothing happens)."""
        if not isinstance(text, str):
            raise TypeError(f"currentText needs a str, got {type(text).__name__}")
        i = self.findText(text)
        if self.editable:
            self._edit = text
            if i >= 0 and i != self._index:
                self._index = i
                self.emit("currentIndexChanged(int)", i)
        elif i >= 0:
            self._set_index(i)

    @property
    def currentData(self):
        return self._items[self._index][1] if self._index >= 0 else None

    def addItem(self, text, data=None):
        self._items.append((str(text), data))
        if self._index < 0:
            self._set_index(0)

    def clear(self):
        self._items = []
        self._set_index(-1)
        self._edit = ""

    def count(self):
        return len(self._items)

    def itemText(self, i):
        return self._items[i][0]

    def findText(self, text):
        return next((i for i, (t, _d) in enumerate(self._items) if t == text), -1)

    def findData(self, data):
        return next((i for i, (_t, d) in enumerate(self._items) if d == data), -1)


class QListWidget(QWidget):
    SIGNALS = ("currentRowChanged(int)",)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._items, self._row = [], -1

    def addItem(self, text):
        self._items.append(str(text))

    def clear(self):
        self._items = []
        self.currentRow = -1

    def count(self):
        return len(self._items)

    @property
    def currentRow(self):
        return self._row

    @currentRow.setter
    def currentRow(self, row):
        row = row if 0 <= row < len(self._items) else -1
        if row != self._row:
            self._row = row
            self.emit("currentRowChanged(int)", row)


class QTableWidgetItem(Strict):
    def __init__(self, text=""):
        if not isinstance(text, str):
            raise TypeError(f"QTableWidgetItem needs a str, got {type(text).__name__}")
        self._text = text

    def text(self):
        return self._text


class QTableWidget(QWidget):
    SIGNALS = ("cellClicked(int,int)",)
    editTriggers = ""
    selectionBehavior = ""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._rows, self._cols, self._items, self._header = 0, 0, {}, []

    def clear(self):
        self._items = {}

    def setColumnCount(self, n):
        self._cols = int(n)

    def setRowCount(self, n):
        self._rows = int(n)

    def rowCount(self):
        return self._rows

    def columnCount(self):
        return self._cols

    def setHorizontalHeaderLabels(self, labels):
        self._header = [str(s) for s in labels]

    def setItem(self, r, c, item):
        assert 0 <= r < self._rows and 0 <= c < self._cols, f"cell ({r}, {c}) outside {self._rows}x{self._cols}"
        assert isinstance(item, QTableWidgetItem)
        self._items[(r, c)] = item

    def item(self, r, c):
        return self._items.get((r, c))


class ctkPathLineEdit(QWidget):
    SIGNALS = ("currentPathChanged(QString)",)
    filters = ""
    nameFilters = ""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._path = ""

    @property
    def currentPath(self):
        return self._path

    @currentPath.setter
    def currentPath(self, path):
        if not isinstance(path, str):
            raise TypeError(f"currentPath needs a str, got {type(path).__name__}")
        if path != self._path:
            self._path = path
            self.emit("currentPathChanged(QString)", path)


class qMRMLNodeComboBox(qMRMLWidget):
    SIGNALS = ("currentNodeChanged(vtkMRMLNode*)", "currentNodeIDChanged(QString)")
    nodeTypes = ()
    noneEnabled = False
    addEnabled = False
    removeEnabled = False

    def __init__(self, parent=None):
        super().__init__(parent)
        self._node = None

    def currentNode(self):
        if self._node is not None and not self._scene_has(self._node):
            self._node = None                     # a removed node is no longer offered
        return self._node

    def _scene_has(self, node):
        scene = getattr(self, "_scene", None)
        return scene is not None and scene.IsNodePresent(node)

    def setCurrentNode(self, node):
        if node is not None:
            assert getattr(self, "_scene", None) is not None, f"{self._name}: no MRML scene set"
            assert self._scene_has(node), f"{self._name}: node not in the scene"
            assert node.GetClassName() in self.nodeTypes, f"{self._name}: {node.GetClassName()} not in {self.nodeTypes}"
        if node is not self._node:
            self._node = node
            self.emit("currentNodeChanged(vtkMRMLNode*)", node)

    @property
    def currentNodeID(self):
        return self._node.GetID() if self._node is not None else ""


class qSlicerMarkupsPlaceWidget(qMRMLWidget):
    buttonsVisible = True

    def setCurrentNode(self, node):
        self._node = node

    def currentNode(self):
        return getattr(self, "_node", None)


WIDGET_CLASSES = {c.__name__: c for c in (
    qMRMLWidget, QLabel, QPushButton, ctkCollapsibleButton, QCheckBox, QRadioButton, QGroupBox, QPlainTextEdit,
    QLineEdit, QSpinBox, QProgressBar, QComboBox, QListWidget, QTableWidget, ctkPathLineEdit, qMRMLNodeComboBox,
    qSlicerMarkupsPlaceWidget, QWidget)}
TYPED_UI_PROPS = {"text", "title", "checked", "editable", "value", "minimum", "maximum", "toolTip",
                  "placeholderText", "readOnly", "collapsed", "wordWrap", "nodeTypes", "noneEnabled", "addEnabled",
                  "removeEnabled", "buttonsVisible"}


def _ui_value(prop):
    child = list(prop)[0]
    if child.tag == "bool":
        return child.text == "true"
    if child.tag == "number":
        return int(child.text)
    if child.tag == "stringlist":
        return tuple(s.text or "" for s in child)
    return child.text or ""


def load_ui(path):
    """The .ui's top widget; every named child is reachable through `childWidgetVariables`."""
    tree = ET.parse(path)
    widgets = {}

    def build(elem):
        cls = WIDGET_CLASSES.get(elem.get("class"))
        if cls is None:
            raise NotImplementedError(f"fake has no widget class {elem.get('class')} ({elem.get('name')})")
        w = cls()
        w._name = elem.get("name")
        for prop in elem.findall("property"):
            name, value = prop.get("name"), _ui_value(prop)
            w._ui_props[name] = value
            if name in TYPED_UI_PROPS and hasattr(type(w), name):
                setattr(w, name, value)
        for item in elem.findall("item"):
            text = [p for p in item.findall("property") if p.get("name") == "text"]
            w.addItem(_ui_value(text[0]) if text else "")
        widgets[w._name] = w
        for child in elem.iter("widget"):
            if child is not elem and _parent_widget(elem, child):
                build(child)
        return w

    def _parent_widget(parent, child):
        """`child` is a direct widget descendant of `parent` (only layouts/items in between)."""
        stack = [(c, False) for c in parent]
        while stack:
            node, _ = stack.pop()
            if node is child:
                return True
            if node.tag != "widget":
                stack.extend((c, False) for c in node)
        return False

    root = build(tree.getroot().find("widget"))
    root._children = widgets
    for conn in tree.getroot().iter("connection"):
        sender, receiver = widgets[conn.findtext("sender")], widgets[conn.findtext("receiver")]
        slot = conn.findtext("slot").split("(")[0]
        sender.connect(conn.findtext("signal"), getattr(receiver, slot))
    return root


class UiVariables(Strict):
    def __init__(self, widgets):
        for name, w in widgets.items():
            object.__setattr__(self, name, w)
