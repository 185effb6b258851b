"""Closed forms the simulator is validated against (and the sweep draws as bounds).

All rates per second, times in seconds. ``lam`` is the total arrival rate,
``mu`` the service rate of one server, ``c`` the number of servers.

- Erlang C: M/M/c with one central FIFO queue (late binding): P(wait), mean wait.
- Erlang B: M/G/c/c, the loss system (``queue.max_size`` 0): P(an arrival is
  refused) for offered load a = lam / mu; insensitive to the service distribution
  beyond its mean.
- Pollaczek-Khinchine: M/G/1 mean wait from the service time's first two moments.
- Supermarket model (Mitzenmacher 2001; Vvedenskaya et al. 1996): n -> infinity
  M/M/1 queues, each arrival joins the shortest of d sampled; the fraction of
  queues with at least i requests is rho^((d^i - 1)/(d - 1)).
- Random dispatch: each queue is M/M/1 at load rho: sojourn 1/(mu (1 - rho)).
"""

from __future__ import annotations

import math


def _check_stable(lam: float, mu: float, c: int) -> float:
    if lam <= 0 or mu <= 0 or c < 1:
        raise ValueError(f"need lam > 0, mu > 0, c >= 1; got lam={lam}, mu={mu}, c={c}")
    rho = lam / (c * mu)
    if rho >= 1:
        raise ValueError(f"rho={rho:.4f} >= 1: no steady state")
    return rho


def erlang_b(c: int, a: float) -> float:
    """Blocking probability of M/G/c/c with offered load ``a`` (Erlangs), by the stable
    recursion B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1))."""
    if c < 0 or not a >= 0 or math.isinf(a):
        raise ValueError(f"need c >= 0 and a finite a >= 0; got c={c}, a={a}")
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(lam: float, mu: float, c: int) -> float:
    """P(an arrival waits) in M/M/c, computed stably via the Erlang B recursion."""
    rho = _check_stable(lam, mu, c)
    b = erlang_b(c, lam / mu)
    return b / (1.0 - rho * (1.0 - b))


def mmc_wait(lam: float, mu: float, c: int) -> float:
    """Mean time in queue of M/M/c (FIFO): C(c, a) / (c mu - lam)."""
    return erlang_c(lam, mu, c) / (c * mu - lam)


def mmc_wait_or_nan(lam: float, mu: float, c: int) -> float:
    """``mmc_wait`` where defined (stable, positive rates), else NaN."""
    try:
        return mmc_wait(lam, mu, c)
    except (ValueError, OverflowError, ZeroDivisionError):
        return math.nan


def mmc_wait_quantile(lam: float, mu: float, c: int, q: float) -> float:
    """q-quantile of the M/M/c waiting time (0 when q <= 1 - P(wait))."""
    pw = erlang_c(lam, mu, c)
    if q <= 1 - pw:
        return 0.0
    return math.log(pw / (1 - q)) / (c * mu - lam)


def pk_wait(lam: float, es: float, es2: float) -> float:
    """Pollaczek-Khinchine mean wait of M/G/1: lam E[S^2] / (2 (1 - rho)), rho = lam E[S]."""
    rho = lam * es
    if rho >= 1 or lam <= 0:
        raise ValueError(f"rho={rho:.4f}: need 0 < rho < 1")
    return lam * es2 / (2.0 * (1.0 - rho))


def md1_wait(lam: float, s: float) -> float:
    """M/D/1 mean wait (P-K with E[S^2] = s^2)."""
    return pk_wait(lam, s, s * s)


def mm1_wait(lam: float, mean_s: float) -> float:
    """M/M/1 mean wait (P-K with E[S^2] = 2 s^2)."""
    return pk_wait(lam, mean_s, 2 * mean_s * mean_s)


def supermarket_tail(rho: float, d: int, i: int) -> float:
    """Fraction of queues holding at least ``i`` requests under power-of-d (n -> inf)."""
    if d == 1:
        return float(rho**i)
    return float(rho ** ((d**i - 1) / (d - 1)))


def supermarket_sojourn(rho: float, d: int, mu: float = 1.0, tol: float = 1e-15) -> float:
    """Mean time in system under power-of-d in the n -> infinity limit.

    Mean requests per queue is sum_{i>=1} s_i; by Little's law per queue
    (arrival rate rho * mu) the sojourn is that sum / (rho * mu).
    """
    if not 0 < rho < 1 or d < 1:
        raise ValueError(f"need 0 < rho < 1 and d >= 1; got rho={rho}, d={d}")
    total, i = 0.0, 1
    while True:
        s = supermarket_tail(rho, d, i)
        total += s
        if s < tol or i > 10_000:
            break
        i += 1
    return total / (rho * mu)


def supermarket_wait(rho: float, d: int, mu: float = 1.0) -> float:
    """Mean time in queue under power-of-d (sojourn minus the mean service 1/mu)."""
    return supermarket_sojourn(rho, d, mu) - 1.0 / mu


def random_dispatch_sojourn(rho: float, mu: float = 1.0) -> float:
    """Mean sojourn with uniformly random dispatch to M/M/1 queues: 1 / (mu (1 - rho))."""
    if not 0 < rho < 1:
        raise ValueError(f"need 0 < rho < 1; got rho={rho}")
    return 1.0 / (mu * (1.0 - rho))


#: two-sided 99% Student t quantiles (0.995) by degrees of freedom
T995 = {9: 3.250, 14: 2.977, 19: 2.861, 29: 2.756, 39: 2.708, 49: 2.680}


def batch_means_ci(x: object, batches: int = 20) -> tuple[float, float]:
    """Mean and 99% half-width by the method of batch means.

    The sequence (in arrival order, after warm-up) is cut into ``batches``
    contiguous batches; their means are close to independent when each batch is
    much longer than the autocorrelation time of the waits, so a t-interval over
    them is an honest confidence interval for the steady-state mean.
    """
    import numpy as np

    arr = np.asarray(x, dtype=float)
    if batches - 1 not in T995:
        raise ValueError(f"batches={batches}: choose one of {sorted(k + 1 for k in T995)}")
    n = len(arr) // batches * batches
    if n < batches * 10:
        raise ValueError(f"{len(arr)} samples are too few for {batches} batches")
    means = arr[:n].reshape(batches, -1).mean(axis=1)
    half = T995[batches - 1] * float(means.std(ddof=1)) / math.sqrt(batches)
    return float(means.mean()), half
