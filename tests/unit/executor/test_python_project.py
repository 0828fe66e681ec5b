"""Where real Python projects declare their test dependencies, Pythons and pytest plugins, read from small
in-memory projects (file path → contents), and the install plan that follows. Nothing is installed here."""

from __future__ import annotations

import textwrap

import pytest
from packaging.specifiers import SpecifierSet

from service_feature.executor.python_project import (
    find_test_dependencies,
    install_plan,
    python_requirement,
    required_pytest_plugins,
)
from service_feature.executor.toolchains import toolchain_for
from service_feature.models import Language

FILE_NAMES = {
    "pyproject_toml": "pyproject.toml",
    "setup_cfg": "setup.cfg",
    "setup_py": "setup.py",
    "tox_ini": "tox.ini",
    "pytest_ini": "pytest.ini",
    "requirements_dev_txt": "requirements-dev.txt",
}


def project(**files: str) -> dict[str, bytes]:
    """A project's dependency files: `project(pyproject_toml=…)`, dedented."""
    return {FILE_NAMES[name]: textwrap.dedent(content).encode() for name, content in files.items()}


def test_dependency_groups_with_include_group_win_over_extras() -> None:
    files = project(
        pyproject_toml="""
        [project]
        name = "p"
        optional-dependencies = { test = ["coverage"] }

        [dependency-groups]
        lint = ["ruff"]
        test = ["pytest-mock>=3", { include-group = "base" }]
        base = ["attrs"]
        """
    )

    found = find_test_dependencies(files)

    assert found.arguments == ("pytest-mock>=3", "attrs")
    assert found.extras == ()
    assert "dependency-groups" in found.source


def test_a_dev_group_is_taken_when_no_group_is_named_like_tests() -> None:
    files = project(pyproject_toml='[dependency-groups]\ndev = ["pytest-cov", "mypy"]\ndocs = ["sphinx"]\n')

    assert find_test_dependencies(files).arguments == ("pytest-cov", "mypy")


def test_include_group_cycles_are_cut() -> None:
    files = project(
        pyproject_toml="""
        [dependency-groups]
        test = ["a", { include-group = "dev" }]
        dev = ["b", { include-group = "test" }]
        """
    )

    assert find_test_dependencies(files).arguments == ("a", "b")


def test_project_extras_named_like_tests_become_extras_of_the_editable_install() -> None:
    files = project(
        pyproject_toml="""
        [project]
        name = "p"
        [project.optional-dependencies]
        docs = ["sphinx"]
        testing = ["pytest-asyncio"]
        """
    )

    plan = install_plan(files)

    assert plan.extras == ("testing",)
    assert plan.install_arguments()[-2:] == ("-e", ".[testing]")
    assert "sphinx" not in plan.install_arguments()


def test_setup_cfg_extras_require() -> None:
    files = project(
        setup_cfg="""
        [metadata]
        name = p
        [options.extras_require]
        tests =
            pytest-mock
            freezegun; python_version < "4"
        """
    )

    assert find_test_dependencies(files).extras == ("tests",)
    assert install_plan(files).install_arguments()[-2:] == ("-e", ".[tests]")


def test_setup_py_extras_are_read_statically_even_through_a_module_level_name() -> None:
    files = project(
        setup_py="""
        import os
        from setuptools import setup

        EXTRAS = {"test": ["pytest-mock"], "docs": ["sphinx"]}
        setup(name="p", extras_require=EXTRAS, python_requires=">=3.9", install_requires=os.environ["X"])
        """
    )

    assert find_test_dependencies(files).extras == ("test",)
    assert python_requirement(files).specifier == SpecifierSet(">=3.9")
    assert install_plan(files).editable


@pytest.mark.parametrize(
    ("names", "picked"),
    [
        (["requirements.txt", "requirements-dev.txt", "requirements-docs.txt"], ["requirements-dev.txt"]),
        (["requirements_test.txt", "requirements-dev.txt"], ["requirements_test.txt"]),
        (["requirements/base.txt", "requirements/tests.txt"], ["requirements/tests.txt"]),
        (["test-requirements.txt", "docs/requirements.txt"], ["test-requirements.txt"]),
        (["dev-requirements.txt"], ["dev-requirements.txt"]),
        (["requirements/ci/test.txt", "requirements/dev.txt"], ["requirements/dev.txt"]),
        (["requirements-dev.txt", "requirements/3.3/requirements-dev.txt"], ["requirements-dev.txt"]),
        (["requirements/ci/test.txt", "requirements/docs.txt"], ["requirements/ci/test.txt"]),
        (["tests/requirements.txt", "requirements.txt"], ["tests/requirements.txt"]),
    ],
)
def test_requirement_files_with_test_like_names_else_dev_like_ones(
    names: list[str], picked: list[str]
) -> None:
    files = {name: b"six\n" for name in names}

    found = find_test_dependencies(files)

    assert found.arguments == tuple(arg for name in picked for arg in ("-r", name))


def test_a_root_requirements_txt_is_always_installed_and_the_project_only_when_installable() -> None:
    plan = install_plan({"requirements.txt": b"six\n", "requirements-test.txt": b"idna\n"})

    assert plan.install_arguments() == ("pytest", "-r", "requirements-test.txt", "-r", "requirements.txt")
    assert not plan.editable


def test_tox_deps_relative_requirements_extras_and_skipped_substitutions() -> None:
    files = project(
        setup_py="from setuptools import setup\nsetup(name='p')\n",
        tox_ini="""
        [tox]
        envlist = py39,py312

        [testenv]
        extras = tests
        deps =
            pytest-mock
            -r{toxinidir}/ci/test.txt
            -c constraints.txt
            py39: importlib-metadata
            django{env:DJANGO_VERSION}
            {[base]deps}
            -e .[speedups]
        commands = pytest {posargs}
        """,
    )

    found = find_test_dependencies(files)

    # ci/test.txt is not a name dependency files are read by: it may exist, uv will say if not
    assert found.arguments == ("pytest-mock", "-r", "ci/test.txt", "-c", "constraints.txt")
    assert found.extras == ("tests", "speedups")
    assert install_plan(files).install_arguments()[-2:] == ("-e", ".[tests,speedups]")


def test_tox_deps_naming_a_requirements_file_the_sdist_left_out_are_skipped_with_a_note() -> None:
    files = project(
        setup_py="from setuptools import setup\nsetup(name='p')\n",
        tox_ini="""
        [testenv]
        deps = -rrequirements-test.txt
        commands = pytest
        """,
    )

    plan = install_plan(files)

    assert plan.install_arguments() == ("pytest", "-e", ".")
    assert plan.notes == (
        "tox.ini [testenv]: `-rrequirements-test.txt` names a file the repository does not have; skipped",
    )
    with_it = install_plan({**files, "requirements-test.txt": b"six\n"})
    assert with_it.install_arguments() == ("pytest", "-r", "requirements-test.txt", "-e", ".")


def test_requirements_with_per_requirement_build_options_are_passed_line_by_line_without_them() -> None:
    files = {
        "setup.py": b"from setuptools import setup\nsetup(name='p')\n",
        "requirements/dev.txt": (
            b"-e . --config-settings=pure-python=false\n-r ci.txt\n# pinned\n"
            b"cython==3.0.6 \\\n    --hash=sha256:abc\n--index-url https://example.org\n"
            b"-c ../constraints.txt\n"
        ),
        "requirements/ci.txt": b"pytest==7.4.3\n",
        "requirements/doc.txt": b"sphinx\n",
    }

    plan = install_plan(files)

    assert plan.install_arguments() == (
        "pytest",
        "-r",
        "requirements/ci.txt",
        "cython==3.0.6",
        "-c",
        "constraints.txt",
        "-e",
        ".",
    )
    assert plan.notes == (
        "requirements/dev.txt: left out what uv does not take, from "
        "`-e . --config-settings=pure-python=false`",
    )
    plain = {**files, "requirements/dev.txt": b"-r ci.txt\n"}
    assert install_plan(plain).install_arguments()[:3] == ("pytest", "-r", "requirements/dev.txt")


def test_all_extras_on_request_and_the_modules_extras_provide() -> None:
    files = project(
        pyproject_toml="""
        [project]
        name = "p"
        [project.optional-dependencies]
        ujson = ["ujson>=5"]
        bson = ["pymongo>=4"]
        yaml = ["PyYAML>=6"]
        [dependency-groups]
        test = ["hypothesis"]
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"
        """
    )

    plan = install_plan(files)
    everything = install_plan(files, all_extras=True)

    assert plan.install_arguments()[-2:] == ("-e", ".")
    assert everything.install_arguments()[-2:] == ("-e", ".[ujson,bson,yaml]")
    assert everything.notes[-1].startswith("every extra installed (ujson, bson, yaml)")
    assert {"ujson", "bson", "pymongo", "mongo", "pyyaml", "yaml"} == plan.extra_modules
    diagrams = install_plan(
        project(
            pyproject_toml='[project]\nname = "p"\n'
            '[project.optional-dependencies]\ndiagrams = ["railroad-diagrams"]\n'
        )
    )
    assert "railroad" in diagrams.extra_modules


def test_tox_legacy_ini_inside_pyproject() -> None:
    files = project(
        pyproject_toml='''
        [tool.tox]
        legacy_tox_ini = """
        [testenv]
        deps = hypothesis
        """
        '''
    )

    assert find_test_dependencies(files).arguments == ("hypothesis",)


def test_hatch_test_environment_with_features() -> None:
    files = project(
        pyproject_toml="""
        [project]
        name = "p"
        [tool.hatch.envs.default]
        dependencies = ["ipython"]
        [tool.hatch.envs.test]
        dependencies = ["pytest-xdist"]
        features = ["extra"]
        """
    )

    found = find_test_dependencies(files)

    assert (found.arguments, found.extras) == (("pytest-xdist",), ("extra",))


def test_pdm_dev_dependencies_skip_templated_entries() -> None:
    files = project(
        pyproject_toml="""
        [tool.pdm.dev-dependencies]
        test = ["pytest-mock", "-e file:///${PROJECT_ROOT}/sub"]
        lint = ["ruff"]
        """
    )

    assert find_test_dependencies(files).arguments == ("pytest-mock",)


def test_poetry_groups_are_converted_to_pep_508_roughly() -> None:
    files = project(
        pyproject_toml="""
        [tool.poetry]
        name = "p"
        [tool.poetry.dependencies]
        python = "^3.9"
        [tool.poetry.group.test.dependencies]
        pytest-mock = "^3.10"
        freezegun = "1.2.2"
        requests = { version = "~2.31", extras = ["socks"] }
        local = { path = "../local" }
        anything = "*"
        [build-system]
        requires = ["poetry-core"]
        build-backend = "poetry.core.masonry.api"
        """
    )

    found = find_test_dependencies(files)

    assert found.arguments == ("pytest-mock>=3.10", "freezegun==1.2.2", "requests[socks]>=2.31", "anything")
    assert python_requirement(files).specifier == SpecifierSet(">=3.9")
    assert install_plan(files).editable  # a build backend makes it installable without [project]


def test_poetry_legacy_dev_dependencies() -> None:
    files = project(pyproject_toml='[tool.poetry.dev-dependencies]\npytest-cov = "^4"\n')

    assert find_test_dependencies(files).arguments == ("pytest-cov>=4",)


def test_the_most_trusted_source_wins_and_sources_are_not_mixed() -> None:
    files = project(
        pyproject_toml='[project]\nname = "p"\noptional-dependencies = { test = ["a"] }\n',
        requirements_dev_txt="b\n",
        tox_ini="[testenv]\ndeps = c\n",
    )

    plan = install_plan(files)

    assert plan.extras == ("test",)
    assert "-r" not in plan.install_arguments()
    assert "c" not in plan.install_arguments()


def test_nothing_declared_is_an_empty_plan_of_pytest_alone() -> None:
    plan = install_plan(project(pyproject_toml="[tool.black]\nline-length = 100\n"))

    assert plan.install_arguments() == ("pytest",)
    assert plan.empty
    assert not install_plan({}).editable


@pytest.mark.parametrize(
    ("config", "plugins"),
    [
        (
            {"pytest_ini": "[pytest]\naddopts = --cov=pkg --cov-report=term -n auto\n"},
            ["pytest-cov", "pytest-xdist"],
        ),
        ({"setup_cfg": "[tool:pytest]\naddopts = --timeout=30 --doctest-modules\n"}, ["pytest-timeout"]),
        (
            {"tox_ini": "[pytest]\naddopts = -p xdist --benchmark-disable\n"},
            ["pytest-xdist", "pytest-benchmark"],
        ),
        (
            {"pyproject_toml": '[tool.pytest.ini_options]\naddopts = ["--reruns", "2"]\n'},
            ["pytest-rerunfailures"],
        ),
        ({"pyproject_toml": '[tool.pytest.ini_options]\nasyncio_mode = "auto"\n'}, ["pytest-asyncio"]),
        (
            {"pytest_ini": "[pytest]\nrequired_plugins = pytest-django>=4 pytest-env\n"},
            ["pytest-django>=4", "pytest-env"],
        ),
        ({"pytest_ini": "[pytest]\naddopts = -p no:cacheprovider -ra --strict-markers\n"}, []),
    ],
)
def test_pytest_plugins_the_configuration_needs(config: dict[str, str], plugins: list[str]) -> None:
    assert required_pytest_plugins(project(**config)) == plugins


def test_pytest_ini_takes_precedence_even_when_it_has_no_settings() -> None:
    files = project(pytest_ini="[pytest]\n", setup_cfg="[tool:pytest]\naddopts = --cov\n")

    assert required_pytest_plugins(files) == []


def test_plugins_are_installed_with_pytest() -> None:
    files = project(pyproject_toml='[tool.pytest.ini_options]\naddopts = "--cov"\n')

    assert install_plan(files).install_arguments() == ("pytest", "pytest-cov")


@pytest.mark.parametrize(
    ("files", "specifier", "classifiers"),
    [
        ({"pyproject_toml": '[project]\nrequires-python = ">=3.10"\n'}, ">=3.10", set()),
        ({"setup_cfg": "[options]\npython_requires = >=3.8, <3.12\n"}, ">=3.8,<3.12", set()),
        (
            {
                "setup_cfg": "[metadata]\nclassifiers =\n    Programming Language :: Python :: 3.9\n"
                "    Programming Language :: Python :: 3 :: Only\n"
            },
            None,
            {"3.9"},
        ),
        ({"pyproject_toml": '[project]\nrequires-python = "not a specifier"\n'}, None, set()),
    ],
)
def test_requires_python_and_classifiers(
    files: dict[str, str], specifier: str | None, classifiers: set[str]
) -> None:
    requirement = python_requirement(project(**files))

    assert requirement.specifier == (SpecifierSet(specifier) if specifier else None)
    assert requirement.classifiers == classifiers


def test_a_pure_flat_project_may_fall_back_to_its_checkout_but_not_a_src_layout_or_extension() -> None:
    flat = project(pyproject_toml='[project]\nname = "p"\ndependencies = ["six"]\n')
    src = project(pyproject_toml='[project]\nname = "p"\n[tool.setuptools.packages.find]\nwhere = ["src"]\n')
    compiled = project(
        setup_py="from setuptools import setup, Extension\nsetup(ext_modules=[Extension('x', [])])\n"
    )

    fallback = install_plan(flat).fallback
    assert fallback is not None
    assert "six" in fallback
    assert "-e" not in fallback
    assert install_plan(src).fallback is None
    assert install_plan(compiled).fallback is None


def test_nested_dependency_files_are_listed_root_patterns_stay_at_the_root() -> None:
    names = [
        "requirements/test.txt",
        "requirements/ci/py312.txt",
        "docs/requirements.txt",
        "pkg/setup.py",
        "tox.ini",
        "setup.cfg",
        "test-requirements.txt",
        "pytest.ini",
    ]

    assert toolchain_for(Language.python).dependency_names(names) == [
        "pytest.ini",
        "requirements/ci/py312.txt",
        "requirements/test.txt",
        "setup.cfg",
        "test-requirements.txt",
        "tox.ini",
    ]
