"""What a run record carries so that it can be trusted on its own: the code's commit, the package
versions, the resolved configuration and the hardware. No absolute path of the machine: paths
under the working directory are made relative, the data path becomes ``<data_path>/<dataset>``,
and any other absolute path keeps only its last part."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any

from recbole_diffurec.paths import CLONE_ROOT

# settings that say where files are or how a run reports, not what it computes
_NOT_SETTINGS = {"config_files", "local_rank", "single_spec", "state", "show_progress", "verbose", "log_wandb"}


# what a run computes with: every tracked file but results and documents (a grid that rebuilds a
# results folder's tables does not make the next run's record dirty)
_CODE = (".", ":(exclude)results", ":(exclude)docs", ":(exclude)*.md")


def _git_commit() -> dict[str, Any] | None:
    if CLONE_ROOT is None or not os.path.isdir(os.path.join(CLONE_ROOT, ".git")):
        return None
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=CLONE_ROOT, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *_CODE], cwd=CLONE_ROOT,
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"sha": sha, "dirty": bool(status.strip())}


_COMMAND: list[str] | None = None  # the command line the runner was given (set_command)
_AT_IMPORT = _git_commit()  # the code this process loaded, whatever is committed while it runs


def commit() -> dict[str, Any] | None:
    """{'sha', 'dirty'} of the clone the package runs from, as it was when this process imported the
    package (``dirty``: tracked files other than results and documents differed from that commit);
    None for an installed package."""
    return _AT_IMPORT


def set_command(argv: list[str]) -> None:
    """The command line of this process's runs, as the runner was given it (a library caller that
    does not set it gets ``sys.argv``)."""
    global _COMMAND
    _COMMAND = list(argv)


def command() -> list[str]:
    """The command line this process's runs record (``set_command``'s, else ``sys.argv``)."""
    return list(_COMMAND) if _COMMAND is not None else [os.path.basename(sys.argv[0])] + sys.argv[1:]


def versions() -> dict[str, str]:
    import numpy
    import recbole
    import torch

    import recbole_diffurec

    return {"python": platform.python_version(), "torch": torch.__version__, "recbole": recbole.__version__,
            "numpy": numpy.__version__, "recbole_diffurec": recbole_diffurec.__version__}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: Any = "cpu") -> dict[str, Any]:
    """The machine a run used: CPU model and cores, torch's thread count, the device (and GPU)."""
    import torch

    info = {"device": str(device), "cpu": _cpu_name(), "cpu_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "os": f"{platform.system()} {platform.machine()}"}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def portable(value: Any, cwd: str | None = None) -> Any:
    """A JSON-safe copy of ``value`` with no absolute path of this machine in it."""
    cwd = cwd or os.getcwd()
    if isinstance(value, dict):
        return {str(k): portable(v, cwd) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v, cwd) for v in value]
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, str):
        if value.startswith("--") and "=" in value:  # a command-line argument: its value's paths
            key, _, rest = value.partition("=")
            return f"{key}={' '.join(portable(part, cwd) for part in rest.split(' '))}"
        if os.path.isabs(value):
            inside = os.path.commonpath([os.path.abspath(value), cwd]) == cwd
            return os.path.relpath(value, cwd) if inside else os.path.join("...", os.path.basename(value))
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        try:
            return value.item()
        except (ValueError, RuntimeError):
            pass
    return str(value)


def resolved_config(config: Any) -> dict[str, Any]:
    """Every setting of a run (RecBole's final config), JSON-safe and without machine paths."""
    final = dict(config.final_config_dict)
    settings = {k: v for k, v in final.items() if k not in _NOT_SETTINGS}
    if "data_path" in settings:
        settings["data_path"] = os.path.join("<data_path>", os.path.basename(str(settings["data_path"])))
    return portable(settings)


def describe(config: Any) -> dict[str, Any]:
    """The provenance fields of a record: commit, versions, hardware, the command and the config."""
    return {
        "commit": commit(),
        "versions": versions(),
        "hardware": hardware(config["device"]),
        "command": portable(command()),
        "config": resolved_config(config),
    }
