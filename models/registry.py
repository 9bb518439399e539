"""One factory for every network: ``create_model(name, **kwargs)``, each variant registered by a
small function, unknown names answered with a suggestion (the shape of timm's registry)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from edgelll.errors import ConfigError, unknown_name

_MODELS: dict[str, tuple[Callable, str]] = {}
_WRAPPERS: dict[str, Callable] = {}


def register_wrapper(name: str) -> Callable:
    """Register how to rebuild a module that wraps another model (a bias-correction layer, a
    nearest-mean head, a column per task): ``fn(arch, input_shape) -> nn.Module``, where ``arch`` is
    what the wrapper's own ``arch()`` returned (it holds the inner model's arch)."""
    def deco(fn: Callable) -> Callable:
        _WRAPPERS[name] = fn
        return fn
    return deco


def register(name: str, description: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        _MODELS[name] = (fn, description)
        return fn
    return deco


def list_models() -> dict[str, str]:
    return {name: desc for name, (_, desc) in sorted(_MODELS.items())}


def model_params(name: str) -> dict:
    """The tunable arguments of a model and their defaults (for ``--set model.KEY=VALUE``)."""
    fn = _lookup(name)
    skip = {"input_shape", "n_classes", "multi_head"}
    return {p.name: p.default for p in inspect.signature(fn).parameters.values() if p.name not in skip}


def _lookup(name: str) -> Callable:
    if name not in _MODELS:
        raise ConfigError(unknown_name("model", name, _MODELS))
    return _MODELS[name][0]


def create_model(name: str, input_shape: tuple[int, ...], n_classes: int, multi_head: bool = False,
                 **kwargs):
    fn = _lookup(name)
    known = model_params(name)
    for key in kwargs:
        if key not in known:
            raise ConfigError(unknown_name(f"parameter of model {name!r}", key, known))
    try:
        model = fn(tuple(input_shape), int(n_classes), multi_head=multi_head, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None
    model.input_shape = tuple(input_shape)
    return model


def rebuild(arch: dict, input_shape: tuple[int, ...]):
    """Make the network described by ``EdgeModel.arch()`` again, head grown to the stored sizes."""
    if arch["name"] in _WRAPPERS:
        return _WRAPPERS[arch["name"]](arch, input_shape)
    head = arch["head"]
    model = create_model(arch["name"], input_shape, int(head["sizes"][0]),
                         multi_head=head["kind"] == "multi", **arch["args"])
    model.set_head(head)
    return model
