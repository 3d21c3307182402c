"""pyproject.toml, environment.yml, postBuild, .ci/run and the README agree with each other."""

import re
import tomllib

import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

CONDA_NAMES = {"pytorch": "torch", "matplotlib-base": "matplotlib"}  # conda-forge name -> PyPI name


def pyproject_deps() -> dict[str, SpecifierSet]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {Requirement(r).name: Requirement(r).specifier for r in meta["dependencies"]}


def environment_deps() -> dict[str, SpecifierSet]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    found = {}
    for dep in env["dependencies"]:
        for spec in dep["pip"] if isinstance(dep, dict) else [dep]:
            name, rest = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", spec).groups()
            found[CONDA_NAMES.get(name, name)] = SpecifierSet(rest.replace(" ", ""))  # raises if invalid
    return found


def test_environment_yml_mirrors_pyproject():
    env = environment_deps()
    py = pyproject_deps()
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert env.pop("python") == SpecifierSet(requires)
    env.pop("pip")
    assert env == py


def test_requires_python_is_what_the_tests_need():
    """The tests read TOML with tomllib (Python 3.11), so the declared minimum must be 3.11."""
    requires = SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    assert "3.10" not in requires and "3.11" in requires


def test_no_exact_pins_in_metadata():
    for name, spec in pyproject_deps().items():
        assert not any(s.operator in ("==", "===") for s in spec), f"{name} is pinned exactly"


def test_ci_runs_the_readme_test_command():
    ci = [line for line in (REPO / ".ci/run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci == ["make test"]
    assert "make test" in (REPO / "README.md").read_text()
    assert "make lab" in (REPO / "README.md").read_text()


def test_readme_lists_every_asset_license():
    from course_utils.assets import ASSETS

    readme = (REPO / "README.md").read_text()
    for asset in ASSETS.values():
        assert asset.package.split("==")[0] in readme and asset.license.split(" ")[0] in readme
    assert "CC-BY-NC-SA-4.0" in readme and "non-commercial" in readme


def test_every_third_party_import_is_declared():
    """What course_utils imports by name is declared in pyproject.toml (a dependency or an extra), not left to
    arrive through another package's requirements."""
    import ast
    import sys
    from importlib.metadata import packages_distributions

    from packaging.utils import canonicalize_name

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = meta["dependencies"] + [r for extra in meta["optional-dependencies"].values() for r in extra]
    declared = {canonicalize_name(Requirement(r).name) for r in requirements}
    torch_own = {"triton"}  # imported only where torch installed it (sim.py), to load it before OpenGL
    distributions = packages_distributions()
    missing = {}
    for path in (REPO / "course_utils").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.split(".")[0] for name in names}:
                if top in sys.stdlib_module_names or top in ("course_utils", "__future__") or top in torch_own:
                    continue
                dists = {canonicalize_name(d) for d in distributions.get(top, [top])}  # mujoco: 3 share a name
                if not dists & declared:
                    missing.setdefault(top, set()).add(path.name)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
