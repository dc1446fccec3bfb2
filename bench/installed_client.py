"""A `musehub` client installed the way a user's is, for the timed clones of `clone_vs_git`.

The project's own virtualenv holds musehub as an editable install: every Python it starts runs
setuptools' editable finder from a `.pth` file before anything else (about 25 ms of each
process's start-up here), which no installed client pays. This makes a virtualenv of its own,
without pip, with the `musehub` package copied into its site-packages and compiled (what
installing the wheel does for a pure-Python package), and the project virtualenv's
site-packages on its path for the dependencies (a path in a `.pth` file: the `.pth` files in
that folder, the editable finder's among them, are not run)."""

from __future__ import annotations

import compileall
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def installed_client(folder: Path) -> Path:
    """The Python of a fresh virtualenv in `folder` that imports musehub as installed."""
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(folder)
    python = folder / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    package = site / "musehub"
    shutil.copytree(ROOT / "musehub", package, ignore=shutil.ignore_patterns("__pycache__"))
    compileall.compile_dir(package, quiet=1)
    (site / "musehub-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python
