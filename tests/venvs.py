"""Real virtual environments for tests and benchmarks, made fast: ``venv`` without pip, this
interpreter's site-packages visible through a ``.pth`` line (NumPy, SciPy, pydantic... are not
downloaded again; the .pth files *inside* that folder, such as its editable accelbench, are not run),
then ``pip --python ENV install --no-deps --no-build-isolation -e`` of the packages that environment
is to have of its own (accelbench from a given checkout, a plugin)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plugin-example"


def python_of(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def make_env(dest: Path, packages: list[Path]) -> Path:
    """A venv at ``dest`` with ``packages`` (source folders) installed editable; its interpreter."""
    venv.create(dest, with_pip=False, symlinks=os.name != "nt")
    py = python_of(dest)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "_shared_deps.pth").write_text("\n".join(sorted(shared)) + "\n")
    if packages:
        cmd = [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-build-isolation",
               "--no-index", "-q", "--disable-pip-version-check"]
        for p in packages:
            cmd += ["-e", str(p)]
        subprocess.run(cmd, check=True, capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    return py


def planted_example(dest: Path, work_factor: float) -> Path:
    """A copy of the example plugin with its WORK_FACTOR changed: a real code change of known size."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
    f = dest / "src" / "accelbench_example" / "horner.py"
    text = f.read_text()
    assert "\nWORK_FACTOR = 1.0\n" in text
    f.write_text(text.replace("\nWORK_FACTOR = 1.0\n", f"\nWORK_FACTOR = {work_factor!r}\n"))
    return dest
