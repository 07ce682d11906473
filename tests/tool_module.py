"""A ``tools/*.py`` script loaded as a module, so that tests call its ``main()`` in-process."""
import importlib.util
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / 'tools'


def load_tool(name: str):
    """``tools/<name>.py`` as a fresh module (each call executes the file again)."""
    spec = importlib.util.spec_from_file_location(f'_tool_{name}', TOOLS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
