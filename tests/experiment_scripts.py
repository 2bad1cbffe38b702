"""Load the experiment scripts (experiments/cpu_reproduction/*.py run as scripts) as modules in tests."""

import importlib.util
import sys
from pathlib import Path

EXPERIMENT = Path(__file__).parents[1] / "experiments" / "cpu_reproduction"
if str(EXPERIMENT) not in sys.path:  # the scripts import their siblings, as `python SCRIPT` lets them
    sys.path.insert(0, str(EXPERIMENT))


def load_script(name: str):
    """experiments/cpu_reproduction/<name>.py as the module `cpu_reproduction_<name>`."""
    spec = importlib.util.spec_from_file_location(f"cpu_reproduction_{name}", EXPERIMENT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module
