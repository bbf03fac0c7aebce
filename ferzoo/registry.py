"""The plugin manager: entry points of group ``ferzoo``, lazy and tolerant loading, name lookup.

* Plugins load on first use (``list_models()``, ``build()``, ...), never at ``import ferzoo``.
* A plugin that fails to import, defines a misspelled hook (``check_pending``) or raises inside a hook is
  recorded in :func:`plugin_errors` and skipped; the others still load.
* ``FERZOO_LOAD_PLUGINS=a,b`` limits which entry points load (an empty value loads none).
* Two plugins registering the same model / loss / data set / weights name: the name is withheld from both
  (looking it up raises :class:`NameClashError` naming both), both plugins are listed with the error by
  ``ferzoo plugins``, and every other name of theirs and of the other plugins loads. The result is the same on
  every call: loading never raises half-way.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .specs import DatasetSpec, LossSpec, ModelSpec

GROUP = "ferzoo"


class PluginError(RuntimeError):
    pass


class NameClashError(PluginError):
    pass


class UnknownNameError(KeyError):
    """An unknown model / loss / data set / weights name; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


@dataclass
class PluginInfo:
    name: str
    version: str | None
    module: str | None
    source: str  # "entry point" or "registered"
    error: str | None = None
    models: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    weights: list[str] = field(default_factory=list)


class Registry:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._loaded = False
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.models: dict[str, ModelSpec] = {}
        self.losses: dict[str, LossSpec] = {}
        self.datasets: dict[str, DatasetSpec] = {}
        self.weights: dict[tuple[str, str], dict] = {}
        #: (kind, name) -> the plugins that both registered it; the name is withheld from the tables
        self.clashes: dict[tuple[str, str], list[str]] = {}
        self._extra: list[tuple[str, Any]] = []

    # -- loading ---------------------------------------------------------------------------------------------
    def ensure_loaded(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            self._load_entry_points()
            for name, obj in self._extra:
                self._add_plugin(name, obj, version=getattr(obj, "__version__", None), source="registered")

    def _load_entry_points(self) -> None:
        wanted = os.environ.get("FERZOO_LOAD_PLUGINS")
        allow = None if wanted is None else {w.strip() for w in wanted.split(",") if w.strip()}
        eps = sorted(md.entry_points(group=GROUP), key=lambda ep: ep.name)
        for ep in eps:
            if allow is not None and ep.name not in allow:
                continue
            if ep.name in self.plugins:  # the same distribution seen twice on sys.path
                continue
            version = ep.dist.version if ep.dist is not None else None
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - tolerant loading is the point
                self.plugins[ep.name] = PluginInfo(ep.name, version, ep.value, "entry point",
                                                   error=_describe(exc))
                continue
            version = getattr(obj, "__version__", None) or version
            self._add_plugin(ep.name, obj, version=version, source="entry point", module=ep.value)

    def register(self, obj: Any, name: str | None = None) -> None:
        """Register a plugin object in-process (tests, notebooks). Loads now if the registry already loaded."""
        name = name or getattr(obj, "__name__", None) or type(obj).__name__
        with self._lock:
            if self._loaded:
                self._add_plugin(name, obj, version=getattr(obj, "__version__", None), source="registered")
            else:
                self._extra.append((name, obj))

    def unregister(self, name: str) -> None:
        with self._lock:
            info = self.plugins.pop(name, None)
            self._extra = [(n, o) for n, o in self._extra if n != name]
            if info is None:
                return
            plugin = self.pm.get_plugin(name)
            if plugin is not None:
                self.pm.unregister(plugin)
            for table, names in ((self.models, info.models), (self.losses, info.losses),
                                 (self.datasets, info.datasets)):
                for n in names:
                    table.pop(n, None)
            for key in list(self.weights):
                if f"{key[0]}.{key[1]}" in info.weights:
                    del self.weights[key]

    def _add_plugin(self, name: str, obj: Any, *, version, source, module=None) -> None:
        info = PluginInfo(name, version, module or getattr(obj, "__name__", None), source)
        if name in self.plugins:
            info.error = f"a plugin named {name!r} is already loaded"
            self.plugins[name + "(duplicate)"] = info
            return
        self.plugins[name] = info
        try:
            self.pm.register(obj, name=name)
        except Exception as exc:  # noqa: BLE001
            info.error = _describe(exc)
            return
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            info.error = f"unknown hook implementation (misspelled?): {exc}"
            self.pm.unregister(obj)
            return
        staged: dict[str, list] = {"models": [], "losses": [], "datasets": [], "weights": []}
        try:
            self._call(obj, "register_models", lambda spec: staged["models"].append(_check(spec, ModelSpec)))
            self._call(obj, "register_losses", lambda spec: staged["losses"].append(_check(spec, LossSpec)))
            self._call(obj, "register_datasets", lambda spec: staged["datasets"].append(_check(spec, DatasetSpec)))
            self._call(obj, "register_weights",
                       lambda model, tag, card: staged["weights"].append((str(model), str(tag), dict(card))))
            self._commit(name, info, staged)
        except Exception as exc:  # noqa: BLE001
            info.error = _describe(exc)
            self.pm.unregister(obj)

    def _call(self, obj, hook_name: str, register) -> None:
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            if impl.plugin is obj:
                impl.function(register=register)

    def _commit(self, plugin: str, info: PluginInfo, staged: dict) -> None:
        tables = {"model": (self.models, staged["models"], info.models),
                  "loss": (self.losses, staged["losses"], info.losses),
                  "dataset": (self.datasets, staged["datasets"], info.datasets)}
        for kind, (table, specs, names) in tables.items():
            for spec in specs:
                key = (kind, spec.name)
                other = table[spec.name].plugin if spec.name in table else None
                if other is None and key in self.clashes:
                    other = self.clashes[key][0]
                if other is not None:
                    self._clash(kind, spec.name, other, plugin, table)
                    continue
                spec.plugin = plugin
                table[spec.name] = spec
                names.append(spec.name)
        for model, tag, card in staged["weights"]:
            key, label = ("weights", f"{model}.{tag}"), f"{model}.{tag}"
            other = self.weights[(model, tag)].get("plugin") if (model, tag) in self.weights else None
            if other is None and key in self.clashes:
                other = self.clashes[key][0]
            if other is not None:
                self._clash("weights", label, other, plugin, None)
                self.weights.pop((model, tag), None)
                continue
            card.setdefault("plugin", plugin)
            self.weights[(model, tag)] = card
            info.weights.append(label)

    def _clash(self, kind: str, name: str, first: str, second: str, table) -> None:
        plugins = self.clashes.setdefault((kind, name), [first])
        if second not in plugins:
            plugins.append(second)
        if table is not None:
            table.pop(name, None)
        message = f"{kind} name clash: {name!r} is registered by " + " and by ".join(f"plugin {p!r}" for p in plugins)
        for p in plugins:
            other = self.plugins.get(p)
            if other is None:
                continue
            for names in (other.models, other.losses, other.datasets, other.weights):
                if name in names:
                    names.remove(name)
            if message not in (other.error or ""):
                other.error = f"{other.error}; {message}" if other.error else message

    # -- lookup ----------------------------------------------------------------------------------------------
    def model(self, name: str) -> ModelSpec:
        self.ensure_loaded()
        return _lookup(self.models, name, "model", self.clashes)

    def loss(self, name: str) -> LossSpec:
        self.ensure_loaded()
        return _lookup(self.losses, name, "loss", self.clashes)

    def dataset(self, name: str) -> DatasetSpec:
        self.ensure_loaded()
        return _lookup(self.datasets, name, "data set", self.clashes)


def _check(spec, cls):
    if not isinstance(spec, cls):
        raise TypeError(f"expected a {cls.__name__}, got {type(spec).__name__}: {spec!r}")
    return spec


def _lookup(table: dict, name: str, kind: str, clashes: dict | None = None):
    if name in table:
        return table[name]
    key = ("loss" if kind == "loss" else "dataset" if kind == "data set" else kind, name)
    if clashes and key in clashes:
        raise NameClashError(f"{kind} name clash: {name!r} is registered by "
                             + " and by ".join(f"plugin {p!r}" for p in clashes[key])
                             + "; uninstall one of them or limit loading with FERZOO_LOAD_PLUGINS")
    known = ", ".join(sorted(table)) or "(none; see `ferzoo plugins` for plugins that failed to load)"
    hint = ""
    import difflib

    close = difflib.get_close_matches(str(name), list(table), n=1)
    if close:
        hint = f" Did you mean {close[0]!r}?"
    raise UnknownNameError(f"unknown {kind} {name!r}.{hint} Known {kind}s: {known}")


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


_REGISTRY: Registry | None = None
_REGISTRY_LOCK = threading.Lock()


def get_registry() -> Registry:
    global _REGISTRY
    with _REGISTRY_LOCK:
        if _REGISTRY is None:
            _REGISTRY = Registry()
        return _REGISTRY


def reset_registry() -> Registry:
    """Forget every loaded plugin (tests; after changing ``FERZOO_LOAD_PLUGINS``)."""
    global _REGISTRY
    with _REGISTRY_LOCK:
        _REGISTRY = Registry()
        return _REGISTRY
