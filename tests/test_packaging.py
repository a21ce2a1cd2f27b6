"""The package list in pyproject.toml names every package and config group, so a regular install has them all."""

from __future__ import annotations

import pytest

from helpers import REPO

tomllib = pytest.importorskip("tomllib")


def test_every_package_and_config_group_is_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    code = {".".join(path.parent.relative_to(REPO).parts) for path in (REPO / "rrn_app").rglob("__init__.py")}
    conf = {"rrn_app.conf." + ".".join(path.relative_to(REPO / "conf").parts)
            for path in (REPO / "conf").rglob("*") if path.is_dir() and any(path.glob("*.yaml"))
            and path.name != "__pycache__"}
    assert code | conf | {"rrn_app.conf"} <= listed, sorted(code | conf - listed)
