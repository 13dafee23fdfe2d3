"""Every third-party module the code imports is declared in pyproject.toml, in the group that needs it: the package
in `dependencies`, the tests also in the `test` extra, the benchmarks and the sample's generator in the `bench`
extra. A machine with packages installed by hand would hide a missing one until a user met it; this test does not
depend on what is installed."""

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the test extra brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# The folders whose imports are checked, and the extras (beside `dependencies`) their imports may come from.
FOLDERS = {"labelscrub": (), "tests": ("test",), "benchmarks": ("bench",), "sample_data": ("bench",)}
# Import names whose distribution is named otherwise, for modules that need not be installed here (an extra).
DISTRIBUTION_OF = {"PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml", "cv2": "opencv-python"}


def normalized(name: str) -> str:
    """A distribution name as the package index compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(extras: tuple[str, ...]) -> set[str]:
    """The distributions pyproject.toml declares in `dependencies` and in the given extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return {normalized(re.match(r"[A-Za-z0-9._-]+", requirement).group()) for requirement in requirements}


def imported_modules(folder: Path) -> dict[str, str]:
    """Each top-level module imported anywhere under `folder` (inside functions too), with one place it is."""
    found = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], f"{path.relative_to(folder.parent)}:{node.lineno}")
    return found


def distribution_of(module: str) -> str:
    installed = packages_distributions().get(module)
    return normalized(installed[0] if installed else DISTRIBUTION_OF.get(module, module))


def undeclared_imports(folder: Path, allowed: set[str]) -> list[str]:
    """'module (distribution) at file:line' for each third-party import under `folder` whose distribution is not in
    `allowed`. The standard library and the project's own modules (any .py file of the checked folders) pass."""
    own = {"labelscrub"} | {path.stem for name in FOLDERS for path in (ROOT / name).rglob("*.py")}
    own |= {path.stem for path in folder.rglob("*.py")}
    missing = []
    for module, place in sorted(imported_modules(folder).items()):
        if module in sys.stdlib_module_names or module in own:
            continue
        if distribution_of(module) not in allowed:
            missing.append(f"{module} ({distribution_of(module)}) at {place}")
    return missing


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_every_third_party_import_is_declared_in_pyproject(folder):
    missing = undeclared_imports(ROOT / folder, declared(FOLDERS[folder]))
    assert not missing, f"add to pyproject.toml ({' or '.join(('dependencies', *FOLDERS[folder]))}): {missing}"


def test_an_undeclared_import_is_named_with_its_place(tmp_path):
    (tmp_path / "script.py").write_text("import json\nimport numpy\n\ndef later():\n    from sklearn import svm\n")
    assert undeclared_imports(tmp_path, declared(())) == [f"sklearn (scikit-learn) at {tmp_path.name}/script.py:5"]
    assert undeclared_imports(tmp_path, declared(("bench",))) == []
