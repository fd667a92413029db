"""A Python with nothing on its path but an unpacked archive and a few of the host's packages: how
the tests prove an archive the program ships (the scheduler's Lambda function, the healer on the
Slurm head) runs on its own, with only what its runtime provides."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path


def link_packages(names: tuple[str, ...], site: Path) -> Path:
    """``site`` holding a link to each of this interpreter's packages (or modules) ``names``."""
    for name in names:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, name
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (site / source.name).symlink_to(source)
    return site


def unpack(files: dict[str, str], into: Path) -> Path:
    """The archive's files (path -> text) written below ``into``."""
    for path, text in files.items():
        target = into / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return into


def run_bare(archive: Path, site: Path, code: str, *, env: dict[str, str] | None, timeout: float, cwd: Path,
             wrapper: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter whose path is ``archive``, then ``site``, then the standard
    library; ``wrapper`` runs it (``setpriv ...``)."""
    # -I -S: no site-packages, no PYTHONPATH, no user site.
    prelude = f"import sys; sys.path[:0] = [{str(archive)!r}, {str(site)!r}]\n"
    return subprocess.run([*wrapper, sys.executable, "-I", "-S", "-c", prelude + code], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env)
