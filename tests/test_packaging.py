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
    assert env.pop("python") == SpecifierSet(">=3.10")
    env.pop("pip")
    assert env == py


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
