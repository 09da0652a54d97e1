"""Only what pyproject.toml cannot say: the package list with one folder renamed.

The analysis processors sit at the top of the repository (``processors/``, where users look for
them) but are installed inside our namespace, as ``flashsim_coffea.processors``: a top-level
``processors`` would shadow the users' own package of that common name. Nothing but
``flashsim_coffea`` is installed at the top level (tests/test_packaging.py). Everything else is
in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["flashsim_coffea*"]), "flashsim_coffea.processors"],
    package_dir={"flashsim_coffea.processors": "processors"},
)
