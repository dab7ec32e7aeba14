"""Frozen, seeded reading orders and A/B placement — balanced so position cannot stand in for source.

Readers tire and anchor on what they saw first, and a source always shown as "A" is unblinded by habit. So:
- each reader reads the cases in their own seeded random order;
- paired design: a study-wide balanced vector says, per case, which source is A; even-numbered readers use it,
  odd-numbered readers its complement — every reader sees each source as A in half the cases (±1), and every case
  shows each source as A to half the readers (±1);
- single design: each reader rates every (case, source) text on its own, in a seeded order in which two texts of
  the same case are never adjacent where that can be avoided.
`random.Random` with an integer seed gives the same orders on every platform and Python version we support.
"""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class PlannedItem:
    reader: str
    position: int          # 1-based, in this reader's order
    case_id: str
    source_a: str
    source_b: str | None   # None in the single design


def _reader_rng(seed: int, index: int) -> random.Random:
    return random.Random(seed * 1_000_003 + index + 1)


def plan_paired(case_ids: list[str], readers: list[str], pair: tuple[str, str], seed: int) -> list[PlannedItem]:
    n = len(case_ids)
    first_is_a = [True] * (n // 2) + [False] * (n - n // 2)
    random.Random(seed).shuffle(first_is_a)
    a_of = dict(zip(case_ids, first_is_a))
    items = []
    for k, reader in enumerate(readers):
        order = list(case_ids)
        _reader_rng(seed, k).shuffle(order)
        for pos, case in enumerate(order, 1):
            first = a_of[case] if k % 2 == 0 else not a_of[case]
            a, b = pair if first else pair[::-1]
            items.append(PlannedItem(reader, pos, case, a, b))
    return items


def _spread(pairs: list[tuple[str, str]], rng: random.Random) -> list[tuple[str, str]]:
    """Shuffle, then move texts so the same case is not read twice in a row (greedy; exact when possible)."""
    rng.shuffle(pairs)
    out: list[tuple[str, str]] = []
    rest = list(pairs)
    while rest:
        pick = next((i for i, p in enumerate(rest) if not out or p[0] != out[-1][0]), 0)
        out.append(rest.pop(pick))
    return out


def plan_single(case_ids: list[str], readers: list[str], sources: list[str], seed: int) -> list[PlannedItem]:
    items = []
    for k, reader in enumerate(readers):
        texts = [(c, s) for c in case_ids for s in sources]
        for pos, (case, source) in enumerate(_spread(texts, _reader_rng(seed, k)), 1):
            items.append(PlannedItem(reader, pos, case, source, None))
    return items
