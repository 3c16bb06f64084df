"""Reasoning-aware advantage estimation (RAAE): ``class_path: rerec.rl.raae.RAAEAdvantage``.

:mod:`~rerec.rl.raae.segments` splits a completion's decoded text into reasoning segments (lines,
paragraphs or sentences, the ``\\boxed{}`` answer line excluded) and finds the wrong recommended titles
they mention; :mod:`~rerec.rl.raae.kg_verify` (optional, ``kg_verify``) finds segments asserting an
(item, relation, value) fact the item–attribute graph contradicts, with a checker the estimator builds
in ``setup(data)`` from the run's title matcher and attributes; :mod:`~rerec.rl.raae.token_spans` maps
each generated token to its characters in that text, so a penalised segment becomes a set of tokens;
and :mod:`~rerec.rl.raae.estimator` (:class:`RAAEAdvantage`, built on the base classes of
:mod:`rerec.rl.advantages`) lowers the reward of those tokens and normalises the token rewards over
each prompt's group of rollouts into per-token advantages.
"""

from rerec.rl.raae.estimator import RAAEAdvantage

__all__ = ["RAAEAdvantage"]
