import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def registry(monkeypatch):
    """A fresh registry holding the built-in plugins plus the toy plugin."""
    from toy_plugin import ToyPlugin

    from ferzoo import registry as reg_mod

    reg = reg_mod.reset_registry()
    reg.register(ToyPlugin(), name="toy_plugin")
    yield reg
    reg_mod.reset_registry()
