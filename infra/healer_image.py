"""The healer's container image (the EKS Deployment's): its build context, its requirements and
its reference.

The image runs the healer archive (infra/healer_archive.py: the closure of ``python -m
gpufleet.automation.heal`` the Slurm head runs too) on a pinned Python slim base, with the
third-party distributions that closure imports and the archive leaves to its host
(``healer_archive.LEFT_TO_HOST``), pinned with their dependencies in
infra/images/healer/requirements.txt. Build it (docs/heal-eks.md)::

    python -m gpufleet.infra.healer_image build/healer-image
    docker build -t "$REPO:$TAG" build/healer-image

Pure: no pulumi import.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from gpufleet.infra.healer_archive import ARCHIVE_DIR, healer_files

__all__ = ["DOCKERFILE", "ENTRYPOINT", "REPOSITORY", "REQUIREMENTS", "build_context", "reference_problem"]

IMAGE_DIR = Path(__file__).resolve().parent / "images" / "healer"
DOCKERFILE = IMAGE_DIR / "Dockerfile"
REQUIREMENTS = IMAGE_DIR / "requirements.txt"
"""Every distribution the image installs, pinned (``pip install --no-deps``: nothing else comes in)."""
REPOSITORY = "gpufleet/healer"
"""The ECR repository of the image, in the account that runs the healer."""
ENTRYPOINT = ("python", "-m", "gpufleet.automation.heal", "--loop")
IMAGE_PYTHON = "3.12"
"""The base image's Python (its markers decide the requirements' dependencies)."""
RUN_AS = 65532
"""The image's user and group (no name in the base image's passwd: nothing else runs as it)."""

TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def registry(account_id: str, region: str) -> str:
    suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
    return f"{account_id}.dkr.ecr.{region}{suffix}"


def repository_url(account_id: str, region: str) -> str:
    return f"{registry(account_id, region)}/{REPOSITORY}"


def reference_problem(value: str, account_id: str, region: str) -> str | None:
    """Why ``value`` is not an image of this account's healer repository with a fixed tag or a
    digest (None: it is). ``latest`` is refused: the repository's tags are immutable, and a
    Deployment naming a moving tag would not roll out when it moves."""
    repo = repository_url(account_id, region)
    if value.startswith(f"{repo}@"):
        return None if DIGEST.match(value[len(repo) + 1:]) else "the digest is not sha256:<64 hex digits>"
    if not value.startswith(f"{repo}:"):
        return f"not an image of {repo} (the healer's repository in this stack's account and region)"
    tag = value[len(repo) + 1:]
    if not TAG.match(tag):
        return f"the tag {tag!r} is not a valid image tag"
    if tag == "latest":
        return "the tag latest moves; name a version tag or a digest"
    return None


def build_context(dest: Path) -> list[Path]:
    """Write the image's build context: the Dockerfile, the requirements and the archive (no
    inventory: the Deployment mounts it from a ConfigMap) under ``healer/``. Returns the files."""
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest}: not empty (the context must hold only what the image gets)")
    written = []
    for source in (DOCKERFILE, REQUIREMENTS):
        target = dest / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        written.append(target)
    for name, text in healer_files(None).items():
        target = dest / ARCHIVE_DIR / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m gpufleet.infra.healer_image CONTEXT_DIR", file=sys.stderr)
        return 2
    try:
        files = build_context(Path(args[0]))
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args[0]}: {len(files)} files; docker build -t {repository_url('ACCOUNT', 'REGION')}:TAG {args[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
