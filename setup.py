"""Packaging: the repository keeps ``pipelines/``, ``taxonomy/`` and ``training/`` at its top, where a newcomer
looks for them, but installs them as ``unieditkit.pipelines``, ``unieditkit.taxonomy`` and ``unieditkit.training``:
one top-level import name, so no other distribution's ``training`` (sam2 ships one) can shadow ours or be
shadowed by it. Everything else (metadata, dependencies, extras) is in ``setup.cfg``."""

from setuptools import find_packages, setup

#: ``unieditkit.ROOMS`` at run time; pip runs this file in an isolated build where ``unieditkit`` cannot be imported
ROOMS = ("pipelines", "taxonomy", "training")

setup(
    package_dir={f"unieditkit.{room}": room for room in ROOMS},
    packages=[
        *find_packages(include=["unieditkit", "unieditkit.*"]),
        *(f"unieditkit.{p}" for p in find_packages(include=[name for room in ROOMS for name in (room, f"{room}.*")])),
    ],
    package_data={
        "unieditkit.taxonomy": ["*.yaml"],
        "unieditkit.pipelines": ["sample_data/*.json", "sample_data/*.md", "sample_data/images/*.jpg"],
    },
)
