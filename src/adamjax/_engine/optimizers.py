"""The Adam family as optax-style ``init``/``update`` pairs with array hyperparameters.

Every transformation here returns the *direction* ``u_n``; the engine applies
``Θ_n = Θ_{n-1} - γ_n · u_n`` (optionally projected onto a box). Hyperparameters
(``b1``, ``b2``, ``eps``, ``eps_root``, ``initial_accumulator``) are plain values
or JAX arrays, so a vmapped sweep can give every run its own values without
recompiling.

The arithmetic follows optax operation by operation (same order, same
rounding), so that fed the same gradients the trajectories agree with
``optax.adam``, ``optax.amsgrad``, ``optax.rmsprop(eps_in_sqrt=False)``,
``optax.adagrad``, ``optax.sgd`` to the last bit; this is what the parity tests
check.

Adam (Kingma & Ba 2015; Dereich, Jentzen & Kassing 2025, Def. 1.1)::

    m_n = α m_{n-1} + (1-α) g_n
    v_n = β v_{n-1} + (1-β) g_n²
    u_n = (m_n / (1-α^n)) / (ε + sqrt(v_n / (1-β^n) + ε_root))

ε sits outside the root (as in optax and PyTorch); ``eps_root`` is the optional
term inside it. ``bias_correction=False`` drops the two ``1-α^n``/``1-β^n``
factors (the form the ODE analysis of the paper uses for the vector field).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

OPTIMIZERS = ("adam", "amsgrad", "rmsprop", "adagrad", "sgd", "sgdm", "signsgd")
# The β hyperparameters each optimizer reads (see ``make_optimizer``).
BETAS = {"adam": ("b1", "b2"), "amsgrad": ("b1", "b2"), "rmsprop": ("b2",), "sgdm": ("b1",)}


class OptHParams(NamedTuple):
    """Per-run numeric hyperparameters (scalars, or arrays with a leading run axis).

    ``b1`` is the momentum parameter α (also the momentum of ``sgdm``), ``b2``
    the second-moment parameter β (the decay of ``rmsprop``).
    """

    b1: Any = 0.9
    b2: Any = 0.999
    eps: Any = 1e-8
    eps_root: Any = 0.0
    initial_accumulator: Any = 0.1


class FamilyState(NamedTuple):
    """One state layout for the whole family (unused moments stay zero).

    ``count`` is the number of updates done so far (int32, as in optax).
    """

    count: jax.Array
    mu: jax.Array
    nu: jax.Array
    nu_max: jax.Array


class Transformation(NamedTuple):
    """An optax-style pair: ``init(params) -> state``, ``update(g, state) -> (u, state)``."""

    init: Any
    update: Any


def _bias_correction(moment, decay, count, fast: bool = False, like=0.0):
    if fast:
        # 1 − βⁿ = −expm1(n·log1p(β − 1)): vectorised transcendental calls instead of
        # XLA's correctly rounded pow (dear on CPU when β differs per run). β − 1 is
        # exact for β ∈ [½, 1) and expm1/log1p avoid the cancellation of 1 − exp(·),
        # so the factor stays within a few ulp for every n (tests/engine/test_optimizers.py).
        dt = moment.dtype
        decay = jnp.asarray(decay, dt)
        bc = -jnp.expm1(count.astype(dt) * jnp.log1p(decay - 1))
        return moment / bc
    # Same expression and dtype handling as optax.tree.bias_correction.
    bc = 1 - decay**count
    # When β and n are shared by a whole vmapped batch, bc is a scalar and XLA
    # would rewrite m / broadcast(bc) as m * broadcast(1/bc) — not bit-exact.
    # Adding 0·like (a per-run hyperparameter, finite) keeps the divisor per run.
    bc = bc + 0 * jnp.asarray(like, bc.dtype)
    return moment / bc.astype(moment.dtype)


def _init(params) -> FamilyState:
    z = jnp.zeros_like(params)
    return FamilyState(count=jnp.zeros([], jnp.int32), mu=z, nu=z, nu_max=z)


def _inc(count):
    # optax.safe_increment: saturate instead of overflowing.
    return jnp.where(count < jnp.iinfo(jnp.int32).max, count + 1, count)


def scale_by_adam(
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    *,
    bias_correction: bool = True,
    fast_pow: bool = False,
) -> Transformation:
    """Adam direction ``m̂_n / (ε + sqrt(v̂_n + ε_root))`` (see module docstring).

    ``fast_pow=True`` computes βⁿ as exp(n·log β) (the engine's default; a few ulp
    from optax) instead of the correctly rounded ``β**n`` (bit-identical to optax).
    """

    def update(g, state: FamilyState, params=None):
        mu = (1 - b1) * g + b1 * state.mu
        nu = (1 - b2) * (g**2) + b2 * state.nu
        count = _inc(state.count)
        if bias_correction:
            mu_hat = _bias_correction(mu, b1, count, fast_pow, eps)
            nu_hat = _bias_correction(nu, b2, count, fast_pow, eps)
        else:
            mu_hat, nu_hat = mu, nu
        u = mu_hat / (jnp.sqrt(nu_hat + eps_root) + eps)
        return u, FamilyState(count, mu, nu, state.nu_max)

    return Transformation(_init, update)


def scale_by_amsgrad(
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    *,
    bias_correction: bool = True,
    fast_pow: bool = False,
) -> Transformation:
    """AMSGrad (Reddi, Kale & Kumar 2018): ``v̂max_n = max(v̂max_{n-1}, v̂_n)``.

    As in ``optax.amsgrad`` the running maximum is taken over the
    bias-corrected second moment; the first moment is bias corrected as in Adam.
    """

    def update(g, state: FamilyState, params=None):
        mu = (1 - b1) * g + b1 * state.mu
        nu = (1 - b2) * (g**2) + b2 * state.nu
        count = _inc(state.count)
        if bias_correction:
            mu_hat = _bias_correction(mu, b1, count, fast_pow, eps)
            nu_eff = _bias_correction(nu, b2, count, fast_pow, eps)
        else:
            mu_hat, nu_eff = mu, nu
        nu_max = jnp.maximum(state.nu_max, nu_eff)
        u = mu_hat / (jnp.sqrt(nu_max + eps_root) + eps)
        return u, FamilyState(count, mu, nu, nu_max)

    return Transformation(_init, update)


def scale_by_rmsprop(
    b2=0.999, eps=1e-8, *, bias_correction: bool = False, fast_pow: bool = False
) -> Transformation:
    """RMSProp, i.e. Adam with α = 0: ``u_n = g_n / (ε + sqrt(v_n))``.

    Matches ``optax.rmsprop(decay=b2, eps=eps, eps_in_sqrt=False)`` (ε outside
    the root, no bias correction by default).
    """

    def update(g, state: FamilyState, params=None):
        nu = (1 - b2) * (g**2) + b2 * state.nu
        count = _inc(state.count)
        nu_hat = _bias_correction(nu, b2, count, fast_pow, eps) if bias_correction else nu
        u = (1 / (jnp.sqrt(nu_hat) + eps)) * g
        return u, FamilyState(count, state.mu, nu, state.nu_max)

    return Transformation(_init, update)


def scale_by_adagrad(initial_accumulator=0.1, eps=1e-7) -> Transformation:
    """AdaGrad (Duchi et al. 2011), as ``optax.adagrad``: ``s_n = s_{n-1} + g_n²``,
    ``u_n = g_n / sqrt(s_n + ε)`` (0 where ``s_n = 0``)."""

    def init(params):
        s = _init(params)
        return s._replace(nu=jnp.full_like(params, initial_accumulator))

    def update(g, state: FamilyState, params=None):
        nu = (g**2) + state.nu
        inv = jnp.where(nu > 0, jax.lax.rsqrt(nu + eps), 0.0)
        u = inv * g
        return u, FamilyState(_inc(state.count), state.mu, nu, state.nu_max)

    return Transformation(init, update)


def scale_by_sgd() -> Transformation:
    """Plain SGD: ``u_n = g_n``."""

    def update(g, state: FamilyState, params=None):
        return g, state._replace(count=_inc(state.count))

    return Transformation(_init, update)


def scale_by_sgdm(b1=0.9) -> Transformation:
    """Heavy-ball momentum as ``optax.sgd(momentum=b1)``.

    ``m_n = g_n + b1 m_{n-1}``, ``u_n = m_n``.
    """

    def update(g, state: FamilyState, params=None):
        mu = g + b1 * state.mu
        return mu, state._replace(count=_inc(state.count), mu=mu)

    return Transformation(_init, update)


def scale_by_signsgd() -> Transformation:
    """signSGD (Adam with α = β = 0, ε = 0): ``u_n = sign(g_n)``."""

    def update(g, state: FamilyState, params=None):
        return jnp.sign(g), state._replace(count=_inc(state.count))

    return Transformation(_init, update)


def make_optimizer(
    kind: str, h: OptHParams, *, bias_correction: bool | None = None, fast_pow: bool = False
):
    """Build the transformation ``kind`` from (possibly traced) hyperparameters ``h``.

    ``bias_correction=None`` takes each method's usual default (on for Adam and
    AMSGrad, off for RMSProp).
    """
    fp = fast_pow
    if kind == "adam":
        bc = True if bias_correction is None else bias_correction
        return scale_by_adam(h.b1, h.b2, h.eps, h.eps_root, bias_correction=bc, fast_pow=fp)
    if kind == "amsgrad":
        bc = True if bias_correction is None else bias_correction
        return scale_by_amsgrad(h.b1, h.b2, h.eps, h.eps_root, bias_correction=bc, fast_pow=fp)
    if kind == "rmsprop":
        bc = False if bias_correction is None else bias_correction
        return scale_by_rmsprop(h.b2, h.eps, bias_correction=bc, fast_pow=fp)
    if kind == "adagrad":
        return scale_by_adagrad(h.initial_accumulator, h.eps)
    if kind == "sgd":
        return scale_by_sgd()
    if kind == "sgdm":
        return scale_by_sgdm(h.b1)
    if kind == "signsgd":
        return scale_by_signsgd()
    raise ValueError(f"optimizer.kind: unknown optimizer {kind!r} (known: {', '.join(OPTIMIZERS)})")
