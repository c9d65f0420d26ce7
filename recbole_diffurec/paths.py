"""Where the package's files are, installed from a wheel or run from a clone.

The YAML defaults live in the repository's top-level ``properties/`` folder. A wheel ships them as
``recbole_diffurec/properties/`` (``setup.cfg`` maps the folder into the package); an editable
install or a plain checkout reads the clone's folder. ``PROPERTIES`` is whichever exists.

A config file named on the command line is read from the working directory first; a path that is
not there but names one of the shipped files (``properties/accuracy.yaml``, or ``accuracy.yaml``)
is read from ``PROPERTIES``, so the presets work from any directory.
"""
from __future__ import annotations

import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_SHIPPED = os.path.join(PACKAGE_DIR, "properties")
_CLONE = os.path.dirname(PACKAGE_DIR)
# a clone: the runner script beside the package (an editable install or a checkout on sys.path)
CLONE_ROOT = _CLONE if os.path.isfile(os.path.join(_CLONE, "run_recbole_diffurec.py")) else None
PROPERTIES = _SHIPPED if os.path.isdir(_SHIPPED) else os.path.join(_CLONE, "properties")


def default_data_path() -> str:
    """The folder holding ``<dataset>/<dataset>.inter`` when no ``data_path`` is given: the clone's
    ``dataset/`` folder, or ``dataset/`` under the working directory for an installed package
    (RecBole's own default)."""
    if CLONE_ROOT is not None:
        return os.path.join(CLONE_ROOT, "dataset")
    return os.path.join(os.getcwd(), "dataset")


def resolve_config_file(path: str) -> str:
    """``path`` if it exists; else the shipped file it names (``properties/X.yaml`` or ``X.yaml``);
    else ``path`` unchanged (the caller reports it missing)."""
    if os.path.isfile(path) or os.path.isabs(path):
        return path
    parts = os.path.normpath(path).split(os.sep)
    if parts and parts[0] == "properties":
        parts = parts[1:]
    shipped = os.path.join(PROPERTIES, *parts) if parts else ""
    return shipped if shipped and os.path.isfile(shipped) else path
