"""Packages are found, never listed by hand: all of featstore/, plus sql/ and experiments/ shipped inside it
(mapped in pyproject.toml's package-dir). pyproject.toml alone cannot add mapped folders to found packages."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["featstore", "featstore.*"]), "featstore.sql", "featstore.experiments"])
