"""Zeros of the Adam vector field and the Lyapunov check.

If Adam converges, its limit is a zero of f — in general not a critical point of
L (Dereich, Jentzen & Kassing 2025, Cor. 1.10). :func:`vf_zero` finds one by
Newton's method on the smooth CRN estimate, :func:`bracket_zero` by bracketing
(1-D, derivative-free); :func:`lyapunov` evaluates ⟨∇L, f⟩, positive where L is a
Lyapunov function of the flow (Thm 2.1).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._engine.pytree import is_flat
from .field import AbstractField
from .vector_field import VectorField


class Zero(NamedTuple):
    """A zero of f̂: ``theta`` (dim,), its SE (delta method), the residual f̂(theta),
    whether the solver converged, ∇L(theta), and the distance to the problem's
    known minimiser (NaN if none)."""

    theta: Any
    se: Any
    residual: Any
    success: bool
    grad_loss: Any
    distance_to_minimizer: float


@eqx.filter_jit
def _newton_parts(vf: VectorField, y):
    f, J = vf.value(y), jax.jacfwd(vf.value)(y)
    C = vf.cov(y) if vf.method != "exact" else jnp.zeros((y.shape[0],) * 2, y.dtype)
    return f, J, C


def vf_zero(
    field: VectorField,
    x0=None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 50,
) -> Zero:
    """Find θ with f̂(θ) = 0 by Newton's method on the CRN estimate f̂ (smooth in θ, so
    the Jacobian J = ∂f̂/∂θ comes from forward-mode AD through the estimator), damped:
    each step θ − λ J⁻¹f̂ takes the largest λ = 2⁻ᵏ that does not increase |f̂| (far from the
    zero, where f̂ is nearly sign-like, a full step can run off to infinity). A start
    from which it does not converge is a warning and ``success`` False.

    The SE of the zero is the delta method, sqrt(diag(J⁻¹ Σ J⁻ᵀ)) with Σ the
    batch-means covariance of f̂ at the zero. ``grad_loss`` = ∇L at the zero: in
    general the zero of f is not a critical point of L (Dereich, Jentzen & Kassing
    2025, Cor. 1.10; Dereich & Jentzen: it is the minimiser iff the noise is symmetric).

    Args:
        field: the :class:`VectorField`.
        x0: the start of Newton's iteration (default 0).
        rtol, atol: Newton stops when every |step| ≤ atol + rtol·|θ|; by default
            rtol = 1e-10 and atol = 1e-12, or 64 and 0.064 units in the last place of
            the field's dtype where that is coarser (float32: a step cannot shrink
            below the spacing of θ).
        max_steps: Newton steps at most.

    Returns:
        A :class:`Zero`: θ, its SE, the residual f̂(θ), success, ∇L(θ) and the
        distance to the problem's known minimiser (NaN if none).
    """
    pytree = x0 is not None and not is_flat(x0)
    if x0 is not None:
        x0, restore = field.to_flat(x0)  # checks θ's dimension (one line if wrong)
        if x0.size != field.dim:
            raise ValueError(f"x0 of shape {x0.shape}: one start point of dim {field.dim}")
    ulp = float(jnp.finfo(field.dtype).eps)
    rtol = max(1e-10, 64 * ulp) if rtol is None else rtol
    atol = max(1e-12, 0.064 * ulp) if atol is None else atol
    d = field.dim
    y = jnp.zeros(d, field.dtype) if x0 is None else jnp.asarray(x0, field.dtype).reshape(d)
    start = y
    # Not optimistix's Levenberg–Marquardt on |f̂|²: tried on the tests' fields, it did not
    # reach the logistic field's zero from θ = 0 in 50 steps (|f̂| = 0.72) and reported
    # success on Zhang's flat field (a stationary point of |f̂|² with |f̂| = 0.19).
    ok = False
    for _ in range(max_steps):
        f, J, C = _newton_parts(field, y)
        step = jnp.linalg.solve(J, f)
        if not bool(jnp.all(jnp.isfinite(step))):  # a singular J (e.g. a flat field)
            break
        if bool(jnp.all(jnp.abs(step) <= atol + rtol * jnp.abs(y))):
            y, ok = y - step, True
            break
        y_next = _damped(field, y, step, float(jnp.linalg.norm(f)))
        if y_next is None:  # no step length decreases |f̂|: stuck (or not finite)
            break
        y = y_next
    f, J, C = _newton_parts(field, y)
    # Steps can also shrink at a jump of a sign-like f̂ (Zhang's example): a zero needs
    # f̂ ≈ 0 there, within 3 SE (and rounding), not just Newton's steps becoming small.
    jump = ok and not bool(jnp.all(jnp.abs(f) <= 3 * jnp.sqrt(jnp.diag(C)) + math.sqrt(ulp)))
    ok = ok and not jump
    if not ok:
        reason = (
            f"f̂ changes sign near θ = {_short(y)} without a zero there (|f̂| = "
            f"{_short(jnp.abs(f))}, far above its SE): a jump, not a zero"
            if jump
            else f"Newton's method did not converge from x0 = {_short(start)} (stopped at "
            f"θ = {_short(y)}); start nearer a zero, e.g. at Adam's final iterate"
        )
        warnings.warn(f"vf_zero: {reason}", RuntimeWarning, stacklevel=2)
    Ji = jnp.linalg.inv(J)
    se = jnp.sqrt(jnp.clip(jnp.diag(Ji @ C @ Ji.T), 0))
    mini = field.problem.minimizer
    dist = float("nan") if mini is None else float(jnp.linalg.norm(y - mini))
    zero = Zero(
        theta=np.asarray(y),
        se=np.asarray(se),
        residual=np.asarray(f),
        success=ok,
        grad_loss=np.asarray(field.problem.grad(y)),
        distance_to_minimizer=dist,
    )
    if pytree:  # θ, its SE, f̂ and ∇L in the caller's structure
        d = zero._asdict()
        back = {k: restore(d[k]) for k in ("theta", "se", "residual", "grad_loss")}
        zero = zero._replace(**back)
    return zero


def _damped(field: VectorField, y, step, norm: float, halvings: int = 30):
    """Backtracking: y − λ·step for the largest λ = 2⁻ᵏ whose |f̂| is finite and not above
    ``norm`` (|f̂(y)|), or None. Far from the zero a full Newton step can overshoot into a
    region where f̂ is flat (a sign-like field) and the iteration runs off to infinity."""
    lam = 1.0
    for _ in range(halvings):
        cand = y - lam * step
        n = float(jnp.linalg.norm(field.value(cand)))
        # ≤, not <: at the zero |f̂| is at its rounding level and cannot fall further.
        if bool(jnp.all(jnp.isfinite(cand))) and n <= norm:
            return cand
        lam /= 2
    return None


def _short(a) -> str:
    return np.array2string(np.asarray(a), precision=3, separator=", ", threshold=6)


def bracket_zero(field: AbstractField, lo: float, hi: float, *, nodes: int = 33, rounds: int = 3):
    """Zero of a 1-D field f̂ that changes sign from ≤ 0 to > 0 in [lo, hi], by bracketing.

    Each round evaluates f̂ on ``nodes`` points of the current bracket in one vectorised
    call and keeps the first cell where f̂ crosses from ≤ 0 to > 0; the zero is the
    linear interpolation in the last cell. Its SE is the delta method SE(f̂)/f̂' with
    the SE interpolated linearly. A derivative-free alternative to :func:`vf_zero` when
    Newton's Jacobian is dear or the field is only piecewise smooth.

    Args:
        field: a field ``θ ↦ (f, se)`` of dimension 1 (e.g. a :class:`VectorField`).
        lo, hi: the initial bracket.
        nodes, rounds: grid points per round and number of rounds (the bracket
            shrinks by ``nodes − 1`` each round).

    Returns:
        ``(zero, se)`` as floats; ``(nan, nan)`` when no sign change is found.
    """
    for _ in range(rounds):
        x = np.linspace(lo, hi, nodes)
        fv, se = (np.asarray(a, np.float64).reshape(-1) for a in field(x[:, None]))
        k = np.nonzero((fv[:-1] <= 0) & (fv[1:] > 0))[0]
        if not k.size:
            return float("nan"), float("nan")
        k = int(k[0])
        lo, hi = x[k], x[k + 1]
    w = fv[k] / (fv[k] - fv[k + 1])
    z = x[k] + w * (x[k + 1] - x[k])
    slope = (fv[k + 1] - fv[k]) / (x[k + 1] - x[k])
    return float(z), float(((1 - w) * se[k] + w * se[k + 1]) / slope)


class Lyapunov(NamedTuple):
    """⟨∇L(θ), f̂(θ)⟩ at each point, its SE, and the fraction of points where it is > 0."""

    values: Any
    se: Any
    fraction_positive: float


def lyapunov(field: VectorField, points) -> Lyapunov:
    """The Lyapunov quantity ⟨∇L(θ), f(θ)⟩ at ``points`` (…, dim).

    L is a Lyapunov function of θ' = −f where this is > 0 (Dereich, Jentzen &
    Kassing 2025, Thm 2.1: near the global minima of an overparametrised ERM for
    large enough mini-batches). SE from the batch-means covariance.
    """
    pts = jnp.asarray(field.to_flat(points)[0], field.dtype)
    flat = pts.reshape(-1, field.dim)
    g = jax.vmap(field.problem.grad)(flat)
    f = field.value(flat)
    val = jnp.sum(g * f, -1)
    if field.method == "exact":
        se = jnp.zeros_like(val)
    else:
        C = field.cov(flat)
        se = jnp.sqrt(jnp.clip(jnp.einsum("ni,nij,nj->n", g, C, g), 0))
    val = np.asarray(val).reshape(pts.shape[:-1])
    se = np.asarray(se).reshape(pts.shape[:-1])
    return Lyapunov(values=val, se=se, fraction_positive=float(np.mean(val > 0)))
