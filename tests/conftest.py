"""Shared fixtures: the test plugin packages installed into a private folder for the run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from neurofm import registry

PACKAGES = Path(__file__).parent / "packages"
PLUGIN_PACKAGES = ("neurofm-acme-plugin", "neurofm-broken-plugin")


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder into which pip installed the acme and broken test plugin packages.

    The packages are copied first so that building them leaves nothing in the source tree. Nothing
    is importable from the folder until a test puts it on ``sys.path`` (see ``third_party_plugins``).
    """
    work = tmp_path_factory.mktemp("plugin-packages")
    sources = [shutil.copytree(PACKAGES / name, work / name) for name in PLUGIN_PACKAGES]
    site = work / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    cmd += ["--no-input", "--disable-pip-version-check", "--target", str(site), *map(str, sources)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (
        f"installing the test plugins failed:\n{done.stdout}\n{done.stderr}"
    )
    return site


def _reload_registries() -> None:
    for reg in registry.REGISTRIES.values():
        reg.reload()


@pytest.fixture
def third_party_plugins(plugin_site: Path) -> Iterator[Path]:
    """The test plugin packages importable and discovered; the normal state is restored after."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(plugin_site))
        mp.delenv(registry.AUTOLOAD_ENV, raising=False)
        _reload_registries()
        try:
            yield plugin_site
        finally:
            for name in [
                m for m in sys.modules if m.split(".")[0] in ("neurofm_acme", "neurofm_broken")
            ]:
                del sys.modules[name]
    _reload_registries()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny simulated dataset (2 sessions, 18x32 movie) written once for the run; read-only."""
    from neurofm.core.data.simulate_to_disk import simulate_to_disk
    from neurofm.core.data.simulation import SimulationConfig

    return simulate_to_disk(
        tmp_path_factory.mktemp("tiny") / "data", SimulationConfig.tiny(), progress=False
    )
