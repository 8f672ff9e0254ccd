"""The three dependency lists agree: pyproject ranges, the pinned constraints, conda's environment."""

from pathlib import Path

import tomllib
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).parents[1]
# PyPI name -> conda-forge name, where they differ
CONDA_NAMES = {"torch": "pytorch-cpu", "ray": "ray-client"}


def pyproject_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    reqs = project["dependencies"] + extras["dev"] + extras["ray"] + extras["instructor"]  # `make`
    return {Requirement(r).name.lower(): Requirement(r) for r in reqs}


def conda_requirements():
    """Package specs of environment.yml (``python=3.11`` and ``pip`` are conda's own entries)."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    specs = [d for d in env["dependencies"] if isinstance(d, str)]
    reqs = [Requirement(s) for s in specs if not s.startswith(("python=", "pip"))]
    return {r.name.lower(): r for r in reqs}


def test_environment_yml_lists_the_same_packages_and_ranges_as_pyproject():
    conda = conda_requirements()
    for name, req in pyproject_requirements().items():
        conda_name = CONDA_NAMES.get(name, name)
        assert conda_name in conda, f"environment.yml lacks {conda_name} (pyproject: {req})"
        assert conda[conda_name].specifier == req.specifier, (
            f"{conda_name}: environment.yml says {conda[conda_name].specifier}, "
            f"pyproject.toml says {req.specifier}"
        )
    extra = set(conda) - {CONDA_NAMES.get(n, n) for n in pyproject_requirements()}
    assert not extra, f"environment.yml lists packages pyproject.toml does not: {sorted(extra)}"


def test_constraints_pin_every_dependency_inside_its_range_and_torch_to_the_cpu_build():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            pins[req.name.lower()] = next(iter(req.specifier)).version
    for name, req in pyproject_requirements().items():
        assert name in pins, f"constraints.txt does not pin {name}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {req.specifier}"
        )
    assert pins["torch"] == "2.13.0"
