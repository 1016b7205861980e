#!/usr/bin/env python3
"""Writes the example traffic files of examples/traffic/ (docs/plans.md, "Traffic files").

Each line is one analysis tick as `cutover metrics export` writes it, with only the counts
and quantiles (the rates are derived). Deterministic: no randomness, so the tests that replay
the shipped plans on these files can assert every decision.

    python3 examples/traffic/generate.py     # from the repository root
"""
import json
import math
import os

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HERE = os.path.dirname(os.path.abspath(__file__))


def scope(requests, errors, p50, p99, **extra):
    s = {"requests": int(round(requests)), "errors": int(round(errors)),
         "p50_ms": round(p50, 1), "p99_ms": round(p99, 1)}
    s.update({k: int(round(v)) for k, v in extra.items() if round(v)})
    return s


def tick(t_s, weight, window_s, old, new, fallback=None):
    """old/new/fallback: (requests, errors, p50, p99, extra) over the window."""
    scopes = {"old": scope(*old[:4], **old[4]), "new": scope(*new[:4], **new[4])}
    users_req = old[0] + new[0]
    users_err = old[1] + new[1]
    if fallback:
        scopes["fallback"] = scope(*fallback[:4], **fallback[4])
        # What fallback answered replaces an env's failure; what it failed stays a failure.
        users_err = old[1] + new[1] - new[4].get("displaced_to_fallback", 0) + fallback[1]
        users_err += new[4].get("displaced_failed", 0)
    p50 = max(old[2], new[2]) if new[0] else old[2]
    p99 = max(old[3], new[3]) if new[0] else old[3]
    scopes["users"] = scope(users_req, max(users_err, 0), p50, p99)
    return {"t_ms": T0 + int(t_s * 1000), "weight": weight, "window_s": window_s,
            "scopes": scopes}


def write(name, lines):
    with open(os.path.join(HERE, name), "w") as f:
        for line in lines:
            f.write(json.dumps(line, separators=(",", ":")) + "\n")


def healthy_day():
    """24 hours of a 10 % canary, a line per 30 s window: demand follows the day (200 rps at
    04:00, 1,000 rps at 16:00), both envs answer 0.1 % errors, 20 ms median, 120 ms p99."""
    w, win = 10.0, 30
    for i in range(24 * 3600 // win):
        t = i * win
        rps = 600 - 400 * math.cos((t / 3600 - 4) / 24 * 2 * math.pi)
        total = rps * win
        old_r, new_r = total * (1 - w / 100), total * w / 100
        yield tick(t, w, win, (old_r, old_r * 0.001, 20, 120, {}),
                   (new_r, new_r * 0.001, 19, 110, {}))


def new_slows_at_25():
    """40 minutes of a canary at 25 % (a line per 5 s over a 10 s window, 2,500 rps): NEW is
    as fast as OLD for 15 s, then, with a quarter of the users on it, its median goes from
    20 to 95 ms and its p99 from 110 to 600 ms, and stays there."""
    win, rps, w = 10, 2500, 25.0
    for i in range(40 * 60 // 5):
        t = i * 5
        total = rps * win
        old_r, new_r = total * (1 - w / 100), total * w / 100
        p50, p99 = (95, 600) if t >= 15 else (20, 110)
        yield tick(t, w, win, (old_r, old_r * 0.001, 20, 120, {}),
                   (new_r, new_r * 0.001, p50, p99, {}))


def fallback_saturates():
    """An hour at 25 % (a line per 5 s over a 10 s window, 2,500 rps): NEW turns 3 % of its
    requests away to FALLBACK from the start; after 2 minutes FALLBACK saturates and fails a
    growing share of what it is sent (60 % after 12 minutes), which users see as errors."""
    win, rps, w = 10, 2500, 25.0
    for i in range(3600 // 5):
        t = i * 5
        total = rps * win
        old_r, new_r = total * (1 - w / 100), total * w / 100
        displaced = new_r * 0.03
        fail = 0.0 if t < 120 else min(0.6, (t - 120) / 600 * 0.6)
        yield tick(t, w, win, (old_r, old_r * 0.001, 20, 120, {}),
                   (new_r, displaced, 20, 110, {"displaced_to_fallback": displaced}),
                   (displaced, displaced * fail, 30, 200 if fail == 0 else 2500, {}))


write("healthy-day.jsonl", healthy_day())
write("new-slows-at-25.jsonl", new_slows_at_25())
write("fallback-saturates.jsonl", fallback_saturates())
