import subprocess
import sys
import textwrap

import pytest

import ferzoo
from ferzoo import LossSpec, ModelSpec, hookimpl
from ferzoo.registry import NameClashError, Registry, UnknownNameError


def run_py(code: str, env_extra=None):
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=120)


def test_import_is_lazy_and_fast():
    out = run_py("""
        import sys, time
        t = time.perf_counter()
        import ferzoo
        dt = time.perf_counter() - t
        names = ferzoo.list_models(); ferzoo.list_datasets(); ferzoo.list_plugins()
        print(dt, 'tensorflow' in sys.modules, 'keras' in sys.modules)
    """)
    assert out.returncode == 0, out.stderr
    dt, tf_loaded, keras_loaded = out.stdout.split()
    assert tf_loaded == "False" and keras_loaded == "False"
    assert float(dt) < 1.0


def test_builtin_plugins_come_from_entry_points(registry):
    plugins = {p["name"]: p for p in ferzoo.list_plugins()}
    for name in ("datasets", "deep_emotion", "dan", "daf_cnn"):
        assert plugins[name]["source"] == "entry point"
        assert plugins[name]["version"]
    assert "synthetic" in ferzoo.list_datasets()
    assert plugins["toy_plugin"]["source"] == "registered"
    assert plugins["toy_plugin"]["version"] == "9.9"
    assert plugins["toy_plugin"]["models"] == ["toy", "toy_rule"]
    assert "toy_centre" in ferzoo.list_losses()


def test_unknown_names_list_known_ones(registry):
    with pytest.raises(UnknownNameError, match=r"unknown model 'tyo'.*Did you mean 'toy'.*toy"):
        ferzoo.build("tyo")
    with pytest.raises(UnknownNameError, match=r"unknown data set 'nope'.*synthetic"):
        ferzoo.get_dataset("nope")
    with pytest.raises(UnknownNameError, match=r"unknown loss 'nope'.*toy_centre"):
        ferzoo.get_loss("nope")


class Broken:
    @hookimpl
    def register_models(self, register):
        raise RuntimeError("boom in hook")


class Misspelled:
    @hookimpl
    def register_model(self, register):  # missing "s": not a hook
        pass


class Good:
    @hookimpl
    def register_models(self, register):
        register(ModelSpec(name="good", builder="x:y"))


def test_tolerant_loading_records_errors_and_keeps_others():
    reg = Registry()
    reg.register(Broken(), name="broken")
    reg.register(Misspelled(), name="misspelled")
    reg.register(Good(), name="good")
    reg.ensure_loaded()
    assert "good" in reg.models
    assert "boom in hook" in reg.plugins["broken"].error
    assert "misspelled" in reg.plugins["misspelled"].error and "register_model" in reg.plugins["misspelled"].error
    assert reg.plugins["good"].error is None


def test_register_wrong_type_is_an_error():
    class WrongType:
        @hookimpl
        def register_losses(self, register):
            register(ModelSpec(name="m", builder="x:y"))

    reg = Registry()
    reg.register(WrongType(), name="wrongtype")
    reg.ensure_loaded()
    assert "expected a LossSpec" in reg.plugins["wrongtype"].error


def test_name_clash_lists_both_plugins_and_loads_everything_else(monkeypatch):
    class First:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec(name="good", builder="a:b"))
            register(ModelSpec(name="only_first", builder="a:b"))

    class Second:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec(name="good", builder="a:b"))
            register(ModelSpec(name="only_second", builder="a:b"))

    class Third:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec(name="third", builder="a:b"))

    monkeypatch.setenv("FERZOO_LOAD_PLUGINS", "")  # only the three plugins below
    reg = Registry()
    reg.register(First(), name="first_plugin")
    reg.register(Second(), name="second_plugin")
    reg.register(Third(), name="third_plugin")
    reg.ensure_loaded()  # never raises half-way
    for _ in range(2):  # the same, complete result on every call
        reg.ensure_loaded()
        assert sorted(reg.models) == ["only_first", "only_second", "third"]
        for name in ("first_plugin", "second_plugin"):
            assert "'good'" in reg.plugins[name].error and "first_plugin" in reg.plugins[name].error \
                and "second_plugin" in reg.plugins[name].error
        assert reg.plugins["third_plugin"].error is None
        with pytest.raises(NameClashError, match=r"'good'.*'first_plugin'.*'second_plugin'"):
            reg.model("good")
    assert reg.plugins["first_plugin"].models == ["only_first"]


def test_loss_name_clash_is_detected_too():
    class L1:
        @hookimpl
        def register_losses(self, register):
            register(LossSpec(name="same", factory="a:b"))

    reg = Registry()
    reg.register(L1(), name="p1")
    reg.ensure_loaded()
    reg.register(L1(), name="p2")
    with pytest.raises(NameClashError, match="loss name clash.*'p1'.*'p2'"):
        reg.loss("same")
    assert "loss name clash" in reg.plugins["p1"].error and "loss name clash" in reg.plugins["p2"].error


def test_broken_entry_point_does_not_break_import(tmp_path):
    # a distribution on sys.path whose entry point module raises at import
    site = tmp_path / "site"
    (site / "badplug").mkdir(parents=True)
    (site / "badplug" / "__init__.py").write_text("raise ImportError('badplug is broken on purpose')\n")
    dist = site / "badplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: badplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ferzoo]\nbadplug = badplug\n")
    out = run_py("""
        import ferzoo
        plugins = {p['name']: p for p in ferzoo.list_plugins()}
        print(plugins['badplug']['error'])
        print('synthetic' in ferzoo.list_datasets())
    """, {"PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stderr
    assert "badplug is broken on purpose" in out.stdout
    assert out.stdout.strip().endswith("True")
    cli = subprocess.run([sys.executable, "-m", "ferzoo.cli", "plugins"], capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(site)}, timeout=120)
    assert cli.returncode == 0
    assert "badplug" in cli.stdout and "ERROR" in cli.stdout and "broken on purpose" in cli.stdout


def test_load_plugins_env_limits_loading():
    out = run_py("""
        import ferzoo
        print(sorted(p['name'] for p in ferzoo.list_plugins()), ferzoo.list_datasets())
    """, {"FERZOO_LOAD_PLUGINS": "datasets"})
    assert out.returncode == 0, out.stderr
    assert "['datasets']" in out.stdout and "synthetic" in out.stdout
    out = run_py("import ferzoo; print(ferzoo.list_plugins(), ferzoo.list_datasets())", {"FERZOO_LOAD_PLUGINS": ""})
    assert out.stdout.strip() == "[] []"
