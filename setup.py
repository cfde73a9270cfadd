"""Packaging: every top-level package of this repository, installed under ``courseinv``.

The repository keeps the original's layout (``db/``, ``config/``, ``course_inventory/``...),
but site-packages must not get bare ``db`` or ``config`` packages that collide with other
distributions. So each package found here is installed as ``courseinv.<name>``; a new job
package is picked up by discovery, never by a hand-kept list. Metadata is in pyproject.toml.
"""

from setuptools import find_packages, setup

NAMESPACE = "courseinv"
LOCAL_ONLY = ["tests", "tests.*", "benchmarks", "benchmarks.*", "build", "build.*"]

found = find_packages(exclude=LOCAL_ONLY)
top_level = sorted({name.split(".")[0] for name in found})

setup(
    packages=[f"{NAMESPACE}.{name}" for name in found],
    package_dir={f"{NAMESPACE}.{name}": name for name in top_level},
)
