"""Installs the project's three top-level folders as one namespace: ``gpufleet.infra``,
``gpufleet.automation`` and ``gpufleet.lifecycle`` (metadata lives in pyproject.toml)."""

from setuptools import find_packages, setup

PARTS = ("infra", "automation", "lifecycle")

setup(
    package_dir={f"gpufleet.{part}": part for part in PARTS},
    packages=[f"gpufleet.{name}" for name in find_packages(include=[f"{p}*" for p in PARTS])],
)
