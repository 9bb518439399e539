"""One factory for every network: ``create_model(name, **kwargs)``, each variant registered by a
small function, unknown names answered with a suggestion (the shape of timm's registry), and
:func:`rebuild`, which makes a model again from its plain-data spec."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from edgelll.errors import ConfigError, unknown_name

from .base import SPEC_FORMAT, Columns
from .preprocess import Preprocess

_MODELS: dict[str, tuple[Callable, str]] = {}


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
                 input: dict | None = None, **kwargs):
    """The network ``name`` for samples of ``input_shape``; ``input`` holds the samples' storage
    ``dtype``, ``layout`` and normalisation ``mean``/``std`` (default: float32, no scaling)."""
    fn = _lookup(name)
    known = model_params(name)
    for key in kwargs:
        if key not in known:
            raise ConfigError(unknown_name(f"parameter of model {name!r}", key, known))
    try:
        model = fn(tuple(input_shape), int(n_classes), multi_head=multi_head, **kwargs)
        model.preprocess = Preprocess(tuple(input_shape), **(input or {}))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None
    return model


def fresh_backbone(model, args: dict | None = None):
    """A newly initialised backbone of the same kind as ``model``'s (a new column), with
    ``args`` in place of the model's own where given (a narrower column)."""
    fn = _lookup(model.name)
    return fn(model.input_shape, 1, **(model.args if args is None else args)).backbone


def rebuild(spec: dict):
    """Make the network ``EdgeModel.spec()`` describes, with its head grown to the stored sizes."""
    if spec.get("format") != SPEC_FORMAT:
        raise ConfigError(f"not an edgelll model spec (format {spec.get('format')!r}, expected "
                          f"{SPEC_FORMAT!r}); it was written by another version of edgelll")
    inp = spec["input"]
    model = create_model(spec["name"], tuple(inp["shape"]), 1, input={
        k: v for k, v in inp.items() if k != "shape"}, **spec["args"])
    if "columns" in spec:
        width = model.feat_dim
        model.backbone = Columns([model.backbone] + [fresh_backbone(model)
                                                     for _ in range(int(spec["columns"]) - 1)], width)
        model.feat_dim = width * int(spec["columns"])
    if "progressive" in spec:
        prog = spec["progressive"]
        model.to_progressive(1, float(prog["width_ratio"]))
        for _ in range(int(prog["columns"]) - 1):
            model.add_column()
    if "whiten" in spec:
        model.add_whiten()
    model.set_head(spec["head"])
    model.labels = spec.get("labels", {})
    return model
