"""Registries of named components: scorers (refusal judges, classifiers, reward and moderation models)
and tie breakers. Plans and flags name an entry by a spec, a registry name or {"type": name, **kwargs}:
    SCORERS.make("keyword_refusal")
    SCORERS.make({"type": "hf_classifier", "model": "distilbert-...-sst-2", "label": "POSITIVE"})

Entries are registered as "module:attr" strings, so nothing heavy is imported until an entry is used;
a study registers its own with `@SCORERS.register("name")` in its module. Every entry is usable by
every study. `check(spec)` validates a spec (known name, known keyword arguments) without building
anything, so that a typo fails before any sampling.
"""
from __future__ import annotations

import importlib
import inspect
import json
from typing import Any, Callable, Union

from common.config import did_you_mean
from common.errors import ConfigError

Spec = Union[str, dict]


class Registry:
    """Name -> factory (a callable, or a "module:attr" string resolved on first use)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Union[str, Callable]] = {}
        self._where: dict[str, str] = {}

    def register(self, name: str, target: Union[str, Callable, None] = None):
        """Register `target` under `name`; without `target`, a class/function decorator."""
        if target is None:
            def decorator(factory):
                self.register(name, factory)
                return factory

            return decorator
        where = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice: {self._where[name]} and {where}")
        self._entries[name], self._where[name] = target, where
        return target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: Any) -> Callable:
        """The factory of `name`, importing its module on first use; ConfigError for an unknown name."""
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}{did_you_mean(str(name), self._entries)}; "
                              f"registered: {', '.join(self.names())}")
        target = self._entries[name]
        if isinstance(target, str):
            module, attr = target.split(":")
            target = self._entries[name] = getattr(importlib.import_module(module), attr)
        return target

    def split(self, spec: Spec) -> tuple[str, dict]:
        """(name, kwargs) of a spec: a registry name or {"type": name, **kwargs}."""
        if isinstance(spec, str):
            return spec, {}
        if not isinstance(spec, dict) or "type" not in spec:
            raise ConfigError(f"{self.kind} spec {json.dumps(spec)}: expected a name or an object with a \"type\"")
        kwargs = dict(spec)
        return kwargs.pop("type"), kwargs

    def check(self, spec: Spec, **given: Any) -> tuple[Callable, dict]:
        """(factory, kwargs) of a valid spec; ConfigError naming an unknown name or keyword argument.
        `given` are arguments the caller passes itself (e.g. a seed)."""
        name, kwargs = self.split(spec)
        factory = self.get(name)
        params = inspect.signature(factory).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            accepted = [p for p in params if p not in given]
            for key in kwargs:
                if key not in params or key in given:
                    raise ConfigError(f"{self.kind} {name!r}: unknown key {key!r}{did_you_mean(key, accepted)}; "
                                      f"accepted: {', '.join(accepted) or 'none'}")
            missing = [p for p, v in params.items() if v.default is inspect.Parameter.empty and p not in kwargs
                       and p not in given and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]
            if missing:
                raise ConfigError(f"{self.kind} {name!r}: missing key {missing[0]!r}")
        return factory, kwargs

    def make(self, spec: Spec, **given: Any):
        """Build the entry a spec names, with its kwargs (and `given`)."""
        factory, kwargs = self.check(spec, **given)
        return factory(**kwargs, **{k: v for k, v in given.items() if k in inspect.signature(factory).parameters})


def parse_spec(text: str) -> Spec:
    """A spec from the command line: a registry name or a JSON object with a "type"."""
    text = text.strip()
    if not text.startswith("{"):
        return text
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"spec {text!r}: invalid JSON: {e.msg}") from None
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(f"spec {text!r}: expected a JSON object with a \"type\"")
    return spec


# A scorer maps (prompt, response) pairs to numbers (common.scorers.Scorer): refusal judges give 1
# when the response complies and 0 when it refuses; classifiers a label probability; reward models
# a reward.
SCORERS = Registry("scorer")
SCORERS.register("keyword_refusal", "common.scorers:KeywordRefusalJudge")
SCORERS.register("hf_classifier", "common.scorers:HFClassifierScorer")
SCORERS.register("hf_reward", "common.scorers:HFRewardScorer")
SCORERS.register("sorrybench_judge", "common.judges:CausalLMJudge")
SCORERS.register("beaver_dam", "common.moderation:ModerationJudge")

# A tie breaker says which of two responses is better (common.tie_breaking).
TIE_BREAKERS = Registry("tie breaker")
TIE_BREAKERS.register("random", "common.tie_breaking:RandomTieBreaker")
TIE_BREAKERS.register("pairrm", "common.tie_breaking:PairRMTieBreaker")
