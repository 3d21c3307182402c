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
    # The one extra that environment.yml carries: a hub's learner image is built from it (repo2docker), and
    # its learners open lessons through nbgitpuller links. pip and Colab learners do not install it.
    classroom = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["classroom"]
    hub = {Requirement(r).name: Requirement(r).specifier for r in classroom if Requirement(r).name == "nbgitpuller"}
    assert "nbgitpuller" not in py and env.pop("nbgitpuller") == hub["nbgitpuller"]
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


def imported_top_names(source: str) -> set[str]:
    """The top-level names of every absolute import in source (functions' bodies included)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def undeclared(sources: dict[str, str], requirements: list[str]) -> dict[str, set[str]]:
    """Third-party names imported in sources (name -> text) whose distribution is not in requirements."""
    import sys
    from importlib.metadata import packages_distributions

    from packaging.utils import canonicalize_name

    declared = {canonicalize_name(Requirement(r).name) for r in requirements}
    torch_own = {"triton"}  # imported only where torch installed it (sim.py), to load it before OpenGL
    local = {"course_utils", "__future__", "conftest", "fake_gpu", "tests"}  # the package itself and the tests' helpers
    distributions = packages_distributions()
    missing = {}
    for where, source in sources.items():
        for top in imported_top_names(source):
            if top in sys.stdlib_module_names or top in local or top in torch_own:
                continue
            dists = {canonicalize_name(d) for d in distributions.get(top, [top])}  # mujoco: 3 share a name
            if not dists & declared:
                missing.setdefault(top, set()).add(where)
    return missing


def notebook_code(path) -> str:
    """A notebook's code cells as one Python source, without IPython's magics and shell lines."""
    import json

    cells = json.loads(path.read_text())["cells"]
    lines = [line for c in cells if c["cell_type"] == "code" for line in "".join(c["source"]).splitlines()]
    return "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))


def test_every_third_party_import_is_declared():
    """What the package, the lessons and the tests import by name is declared in pyproject.toml, not left to arrive
    through another package's requirements: the lessons' imports in the base dependencies (Colab's setup cell
    installs no extra), the package's and the tests' in the base or an extra."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    everything = meta["dependencies"] + [r for extra in meta["optional-dependencies"].values() for r in extra]
    package = {p.name: p.read_text() for p in (REPO / "course_utils").rglob("*.py")}
    tests = {p.name: p.read_text() for p in (REPO / "tests").glob("*.py")}
    lessons = {p.name: notebook_code(p) for p in sorted((REPO / "notebooks").glob("*.ipynb"))}
    assert len(lessons) >= 9 and "scipy" in imported_top_names(lessons["04_fine_tuning_images.ipynb"])
    assert not undeclared(package, everything), f"imported but not declared: {undeclared(package, everything)}"
    assert not undeclared(tests, everything), f"imported but not declared: {undeclared(tests, everything)}"
    base = undeclared(lessons, meta["dependencies"])
    assert not base, f"lessons import what the base install (Colab's) does not declare: {base}"


def test_the_import_check_catches_an_undeclared_import():
    """scipy is declared only because lesson 04 imports it: without its line the check names it."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    without = [r for r in meta["dependencies"] if Requirement(r).name != "scipy"]
    lesson = {"04": notebook_code(REPO / "notebooks" / "04_fine_tuning_images.ipynb")}
    assert undeclared(lesson, without) == {"scipy": {"04"}}
