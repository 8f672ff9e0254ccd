"""Notebooks pin the library version they were written for."""

import pytest

import rlteach


def test_require_version_accepts_the_same_minor_version_and_names_a_mismatch():
    major_minor = ".".join(rlteach.__version__.split(".")[:2])
    rlteach.require_version(major_minor)
    with pytest.raises(RuntimeError, match="written for rlteach 9.9"):
        rlteach.require_version("9.9")
