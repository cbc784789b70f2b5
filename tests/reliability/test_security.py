"""No code runs from files: the package never unpickles, evaluates or executes anything it reads
(checked on its source), and pickles planted in session arrays or checkpoints are refused without
running. Configs naming modules: tests/reliability/test_config_loader_fuzz.py; pickled weights:
tests/reliability/test_checkpoint_loader_fuzz.py::test_a_pickle_in_place_of_the_weights_is_never_unpickled."""

from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import write_small_session

import neurofm
from neurofm.core.data import Session
from neurofm.errors import SessionFormatError

PACKAGE = Path(neurofm.__file__).parent
UNSAFE_MODULES = {
    "pickle",
    "_pickle",
    "cPickle",
    "dill",
    "cloudpickle",
    "shelve",
    "marshal",
    "joblib",
}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all"}
UNSAFE_LOADERS = {"Loader", "UnsafeLoader", "FullLoader"}
# the same patterns as text, for code held in strings (e.g. the plugin scaffold's templates)
UNSAFE_TEXT = re.compile(
    r"^\s*(import|from)\s+(c?pickle|dill|cloudpickle|shelve|marshal)\b|\bpickle\.loads?\(|"
    r"\byaml\.(unsafe_|full_)?load\(|allow_pickle\s*=\s*True|(?<![\w.])(eval|exec)\(",
    re.MULTILINE,
)


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_uses(source: str, filename: str = "<source>") -> list[str]:
    """Every place in ``source`` that could run code from data: ``file:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            found += [
                f"{where}: imports {n}" for n in names if n and n.split(".")[0] in UNSAFE_MODULES
            ]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("eval", "exec", "__import__"):
                found.append(f"{where}: calls {func.id}()")
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                owner, attr = func.value.id, func.attr
                if (
                    owner == "torch"
                    and attr == "load"
                    and not _is_true(_keyword(node, "weights_only"))
                ):
                    found.append(f"{where}: torch.load without weights_only=True")
                if owner == "yaml" and attr in UNSAFE_YAML:
                    found.append(f"{where}: yaml.{attr} (use yaml.safe_load)")
            if _is_true(_keyword(node, "allow_pickle")):
                found.append(f"{where}: allow_pickle=True")
            loader = _keyword(node, "Loader")
            if isinstance(loader, ast.Attribute) and loader.attr in UNSAFE_LOADERS:
                found.append(f"{where}: Loader={loader.attr}")
    return found


def test_the_detector_finds_every_unsafe_pattern() -> None:
    planted = """
import pickle
from dill import loads
import torch, yaml, numpy as np
torch.load("w.pt")
torch.load("w.pt", weights_only=False)
yaml.load(text)
yaml.unsafe_load(text)
yaml.load_all(text, Loader=yaml.FullLoader)
np.load("a.npy", allow_pickle=True)
eval("1")
exec("x = 1")
__import__("os")
"""
    found = unsafe_uses(planted)
    assert len(found) == 12, "\n".join(found)
    safe = """
import torch, yaml, numpy as np
torch.load("w.pt", weights_only=True)
yaml.safe_load(text)
np.load("a.npy", allow_pickle=False)
model.eval()
"""
    assert unsafe_uses(safe) == []
    assert len(UNSAFE_TEXT.findall(planted)) == 7  # the text patterns, for code in strings
    assert not UNSAFE_TEXT.findall(safe + '"""no pickle: tensors only"""')


def test_the_package_source_runs_nothing_it_reads() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50  # the whole package, not an empty folder
    found = []
    for file in files:
        text = file.read_text(encoding="utf-8")
        name = str(file.relative_to(PACKAGE.parent))
        found += unsafe_uses(text, name)
        found += [f"{name}: text {m.group(0)!r}" for m in UNSAFE_TEXT.finditer(text)]
    assert not found, "code that could run data as code:\n" + "\n".join(found)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_session_array_is_refused_without_running(tmp_path: Path) -> None:
    folder = write_small_session(tmp_path / "data")
    marker = tmp_path / "payload-ran"
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(marker)
    np.save(folder / "units" / "area.npy", payload, allow_pickle=True)
    with pytest.raises(SessionFormatError, match=r"units\.area: cannot read .*area\.npy"):
        Session.open(folder)
    assert not marker.exists()
    assert pickle.loads(pickle.dumps(_Payload(marker))) is None and marker.exists()  # it is live
