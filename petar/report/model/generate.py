"""Our own decoding loop: prefill with `inputs_embeds`, then one token at a time on a KV cache.

Several prompts (all lesions of an exam) run as one batch. Rows are LEFT-padded: each row's embeddings (already
spliced with its own image features) sit at the right end, an attention mask hides the padding and position ids
count from each row's first real token, so every row sees exactly what it would see alone. A row that emits an
end-of-sequence id is finished (the id is kept, as transformers' `generate` keeps it); it is then fed a pad id,
whose output is ignored, until every row is done or `max_new_tokens` is reached.

Greedy decoding takes the arg-max (first index on ties), as transformers does. Sampling applies temperature,
then top-k, then top-p (nucleus) and draws from the softmax with an optional seeded generator.
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from ...errors import InputError


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_sampler(do_sample: bool, temperature: float, top_p: float, top_k: int, generator=None):
    """Return a function logits (B, V) float32 → token ids (B,)."""
    if not do_sample:
        return lambda logits: logits.argmax(dim=-1)
    if not temperature or temperature <= 0:
        raise InputError(f"temperature must be > 0 when sampling, got {temperature}")
    if not 0 < top_p <= 1:
        raise InputError(f"top_p must be in (0, 1], got {top_p}")
    if top_k is None or top_k < 0:
        raise InputError(f"top_k must be >= 0 (0 = off), got {top_k}")

    def sample(logits: torch.Tensor) -> torch.Tensor:
        logits = logits / temperature
        if top_k and top_k < logits.shape[-1]:
            kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if top_p < 1.0:
            sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
            probs = sorted_logits.softmax(dim=-1)
            before = probs.cumsum(dim=-1) - probs          # mass of the better tokens
            drop_sorted = before >= top_p                  # the best token always stays
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        probs = logits.softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    return sample


def _new_cache(net):
    from transformers import DynamicCache

    try:
        return DynamicCache(config=net.config)
    except TypeError:                                       # older transformers: no config argument
        return DynamicCache()


def _step(net, embeds, attention_mask, position_ids, cache) -> torch.Tensor:
    """Run the decoder; return float32 logits of the last position only (B, V)."""
    out = net.model(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                    past_key_values=cache, use_cache=True)
    return net.lm_head(out.last_hidden_state[:, -1]).float()


@torch.no_grad()
def decode(net, rows: list, *, max_new_tokens: int, eos_token_ids, pad_token_id: int, sampler: Callable,
           on_token: Callable | None = None, should_stop: Callable | None = None,
           timing: dict | None = None) -> list[list[int]]:
    """Generate for each row of `rows` (each a (L_i, hidden) embedding tensor); return the new ids per row."""
    b = len(rows)
    results: list[list[int]] = [[] for _ in range(b)]
    timing = timing if timing is not None else {}
    timing.update(prefill_ms=0.0, decode_ms=0.0, tokens=0)
    if b == 0 or max_new_tokens <= 0 or (should_stop is not None and should_stop()):
        return results
    device = rows[0].device
    length = max(r.shape[0] for r in rows)
    embeds = rows[0].new_zeros(b, length, rows[0].shape[-1])
    mask = torch.zeros(b, length, dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        embeds[i, length - r.shape[0]:] = r
        mask[i, length - r.shape[0]:] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    eos = set(int(e) for e in (eos_token_ids or ()))
    finished = [False] * b
    cache = _new_cache(net)

    t0 = time.perf_counter()
    logits = _step(net, embeds, mask, positions, cache)
    _sync(device)
    t1 = time.perf_counter()
    timing["prefill_ms"] = (t1 - t0) * 1000.0
    next_pos = positions[:, -1:] + 1
    ones = torch.ones(b, 1, dtype=torch.long, device=device)
    pad = torch.full((b,), int(pad_token_id), dtype=torch.long, device=device)
    for step in range(max_new_tokens):
        tokens = sampler(logits)
        for i, t in enumerate(tokens.tolist()):
            if finished[i]:
                continue
            results[i].append(t)
            timing["tokens"] += 1
            if on_token is not None:
                on_token(i, t)
            if t in eos:
                finished[i] = True
        if all(finished) or step == max_new_tokens - 1:
            break
        if should_stop is not None and should_stop():
            break
        done = torch.tensor(finished, device=device)
        feed = torch.where(done, pad, tokens)
        mask = torch.cat([mask, ones], dim=1)
        logits = _step(net, net.model.embed_tokens(feed[:, None]), mask, next_pos, cache)
        next_pos = next_pos + 1
    _sync(device)
    timing["decode_ms"] = (time.perf_counter() - t1) * 1000.0
    return results
