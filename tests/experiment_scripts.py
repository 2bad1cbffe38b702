"""Load the experiment scripts (experiments/<experiment>/*.py, run as scripts) as modules in tests."""

import importlib.util
import sys
from pathlib import Path

EXPERIMENTS = Path(__file__).parents[1] / "experiments"
EXPERIMENT = EXPERIMENTS / "cpu_reproduction"


def importable(experiment: str) -> Path:
    """experiments/<experiment>, put on sys.path: the scripts import their siblings, as `python SCRIPT` lets
    them."""
    folder = EXPERIMENTS / experiment
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return folder


importable("cpu_reproduction")


def load_script(name: str, experiment: str = "cpu_reproduction"):
    """experiments/<experiment>/<name>.py as the module `<experiment>_<name>`."""
    path = importable(experiment) / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{experiment}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module
