"""``neurofm new-plugin``: scaffolded packages install, pass their own tests and are discovered."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neurofm.core.cli import main
from neurofm.scaffold import plugin_layout, scaffold_plugin

KINDS = {"modality": "testlab.lfp", "readout": "testlab.gain_readout", "head": "testlab.huber"}


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NEUROFM_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    return env


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Every kind scaffolded through the CLI and pip-installed into a private folder."""
    root = tmp_path_factory.mktemp("new-plugin")
    for kind, name in KINDS.items():
        code, stdout, stderr = _run(["new-plugin", kind, name, "--out", str(root / kind)])
        assert code == 0, stderr
        assert "pip install -e" in stdout
    site = root / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    cmd += ["--no-input", "--disable-pip-version-check", "--target", str(site)]
    cmd += [str(root / kind) for kind in KINDS]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
    return root, site


def test_layout_of_a_scaffolded_package(scaffolded: tuple[Path, Path]) -> None:
    root, _ = scaffolded
    folder = root / "modality"
    pyproject = (folder / "pyproject.toml").read_text()
    assert '[project.entry-points."neurofm.modalities"]' in pyproject
    assert '"testlab.lfp" = "neurofm_testlab_lfp.encoder:LfpEncoder"' in pyproject
    module = (folder / "neurofm_testlab_lfp" / "encoder.py").read_text()
    assert 'type: Literal["testlab.lfp"] = "testlab.lfp"' in module
    assert "series_tokens" in module
    assert "check_modality" in (folder / "tests" / "test_encoder.py").read_text()
    assert "testlab.lfp" in (folder / "README.md").read_text()
    head = (root / "head" / "pyproject.toml").read_text()
    assert '[project.entry-points."neurofm.heads"]' in head
    assert '"testlab.huber" = "neurofm_testlab_huber.head:HuberHead"' in head
    # the readout writes only what is its own; neurofm.Readout builds it and keeps its sessions
    readout = (root / "readout" / "neurofm_testlab_gain_readout" / "readout.py").read_text()
    assert "def build_shared(self)" in readout and "def add_session(self, key" in readout
    for inherited in ("def __init__", "def add_sessions", "def known_sessions"):
        assert inherited not in readout


def test_scaffolded_packages_pass_their_own_tests(scaffolded: tuple[Path, Path]) -> None:
    root, site = scaffolded
    tests = [str(root / kind / "tests") for kind in KINDS]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, cwd=root, env=_env(site)
    )
    assert done.returncode == 0, f"generated tests failed:\n{done.stdout[-4000:]}\n{done.stderr}"
    assert "9 passed" in done.stdout


def test_scaffolded_plugins_are_listed_as_loaded(scaffolded: tuple[Path, Path]) -> None:
    _, site = scaffolded
    cmd = [sys.executable, "-m", "neurofm", "plugins"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=_env(site))
    assert done.returncode == 0, done.stderr
    rows = {tuple(line.split()[:2]): line for line in done.stdout.splitlines()}
    for kind, name in KINDS.items():
        line = rows[(plugin_layout(kind, name).registry, name)]
        assert line.rstrip().endswith("loaded"), line
        assert plugin_layout(kind, name).dist in line


def test_generated_code_is_ruff_clean(scaffolded: tuple[Path, Path]) -> None:
    root, _ = scaffolded
    for kind in KINDS:
        for args in (["check"], ["format", "--check"]):
            cmd = [sys.executable, "-m", "ruff", *args, "--no-cache", "-q", "."]
            try:
                done = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=60, cwd=root / kind
                )
            except FileNotFoundError:  # pragma: no cover
                pytest.skip("ruff is not installed")
            if "No module named ruff" in done.stderr:
                pytest.skip("ruff is not installed")
            assert done.returncode == 0, f"{kind}: ruff {args}:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["new-plugin", "sampler", "lab.x"], "unknown plugin kind 'sampler'"),
        (["new-plugin", "modality", "Lab-LFP"], "invalid plugin name 'Lab-LFP'"),
        (["new-plugin", "modality", "lab..lfp"], "invalid plugin name"),
        (["new-plugin", "head", "lab.x", "--package", "1bad"], "invalid Python package name"),
        (["new-plugin", "head", "lab.x", "--package", "neurofm"], "shadow neurofm"),
        (["new-plugin", "modality", "movie"], "already installed"),
    ],
)
def test_invalid_requests_are_refused(tmp_path: Path, argv: list[str], message: str) -> None:
    code, _, stderr = _run([*argv, "--out", str(tmp_path / "pkg")])
    assert code == 2
    assert message in stderr
    assert not (tmp_path / "pkg").exists()


def test_refuses_to_overwrite_a_folder(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "keep.txt").write_text("mine")
    code, _, stderr = _run(["new-plugin", "readout", "lab.r", "--out", str(tmp_path / "pkg")])
    assert code == 2 and "already exists" in stderr
    assert sorted(p.name for p in (tmp_path / "pkg").iterdir()) == ["keep.txt"]


def test_names_are_derived_safely(tmp_path: Path) -> None:
    layout = plugin_layout("modalities", "my_lab.two_photon.lfp")
    assert layout.kind == "modality"
    assert layout.package == "neurofm_my_lab_two_photon_lfp"
    assert layout.dist == "neurofm-my-lab-two-photon-lfp"
    assert (layout.cls, layout.config) == ("LfpEncoder", "LfpConfig")
    out = scaffold_plugin("head", "lab.robust_mse", tmp_path / "x", package="lab_heads")
    assert (out / "lab_heads" / "head.py").is_file()
    assert (
        '"lab.robust_mse" = "lab_heads.head:RobustMseHead"' in (out / "pyproject.toml").read_text()
    )
