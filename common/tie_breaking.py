"""Which of two responses to prefer when the refusal judge cannot tell them apart.

A tie breaker answers `first_is_better(prompts, first, second) -> list[bool]` for a batch of ties:
- `RandomTieBreaker(seed)`: a seeded coin per tie;
- `ScorerTieBreaker(spec)`: any scorer of common.registry.SCORERS used as a reward model (higher is
  better), e.g. {"type": "hf_reward", "model": "OpenAssistant/reward-model-deberta-v3-large-v2", "text": "chat"};
  equal or missing rewards fall back to the seeded coin;
- `PairRMTieBreaker(model)`: PairRM (the paper's choice, `llm-blender/PairRM`) through the
  `llm-blender` package, which compares the two responses jointly.
Models are loaded on first use only (no ties, no model) and freed by `close()`. "random" and
"pairrm" are entries of common.registry.TIE_BREAKERS; a study may register more.
"""
from __future__ import annotations

import random
from typing import Optional, Sequence, Union

from common.errors import ConfigError
from common.registry import SCORERS, TIE_BREAKERS

PAIRRM = "llm-blender/PairRM"


class RandomTieBreaker:
    name = "random"

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)

    def first_is_better(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> list[bool]:
        return [self.rng.random() < 0.5 for _ in prompts]

    def close(self) -> None:
        pass


class ScorerTieBreaker:
    """A pointwise reward model from the scorer registry; a seeded coin when the rewards are equal."""

    name = "reward_model"

    def __init__(self, spec: Union[str, dict], seed: int = 0):
        self.spec, self.scorer, self.coin = spec, None, RandomTieBreaker(seed)

    def first_is_better(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> list[bool]:
        if self.scorer is None:
            self.scorer = SCORERS.make(self.spec)
        first_rewards = self.scorer.score(prompts, first)
        second_rewards = self.scorer.score(prompts, second)
        coins = self.coin.first_is_better(prompts, first, second)
        return [coin if a is None or b is None or a == b else a > b
                for a, b, coin in zip(first_rewards, second_rewards, coins)]

    def close(self) -> None:
        if self.scorer is not None:
            self.scorer.close()
            self.scorer = None


class PairRMTieBreaker:
    """PairRM compares both responses in one pass (`Blender.compare`); needs `pip install llm-blender`."""

    name = "pairrm"

    def __init__(self, model: str = PAIRRM, device: Optional[str] = None, batch_size: int = 8):
        self.model, self.device, self.batch_size, self.blender = model, device, batch_size, None

    def first_is_better(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> list[bool]:
        if self.blender is None:
            try:
                import llm_blender
            except ImportError:
                raise ConfigError("the pairrm reward model needs the llm-blender package (pip install "
                                  "git+https://github.com/yuchenlin/LLM-Blender.git), or pass an "
                                  "hf_reward spec as --reward_model") from None
            self.blender = llm_blender.Blender()
            self.blender.loadranker(self.model, **({"device": self.device} if self.device else {}))
        better = self.blender.compare(list(prompts), list(first), list(second), batch_size=self.batch_size)
        return [bool(b) for b in better]

    def close(self) -> None:
        self.blender = None


def make_tie_breaker(reward_model: Union[None, str, dict], seed: int):
    """Random when `reward_model` is None; a TIE_BREAKERS entry ("pairrm", {"type": "pairrm", ...});
    else a scorer spec, used as a pointwise reward model. The spec is validated here; nothing loads."""
    if reward_model is None:
        return RandomTieBreaker(seed)
    name, _ = TIE_BREAKERS.split(reward_model)
    if name in TIE_BREAKERS:
        return TIE_BREAKERS.make(reward_model, seed=seed)
    if name not in SCORERS:
        raise ConfigError(f"reward model {name!r} is not a tie breaker ({', '.join(TIE_BREAKERS.names())}) "
                          f"and not a registered scorer ({', '.join(SCORERS.names())})")
    SCORERS.check(reward_model)
    return ScorerTieBreaker(reward_model, seed)
