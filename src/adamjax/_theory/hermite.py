"""The cubic Hermite interpolant and the slopes it needs, shared by the field tables and
the APT flow grids."""

from __future__ import annotations


def hermite(y0, y1, d0, d1, u, h):
    """Cubic Hermite interpolant on a cell of width ``h`` at the relative position
    ``u`` = τ/h ∈ [0, 1], from the values ``y0``, ``y1`` and slopes ``d0``, ``d1`` at its
    ends::

        p(u) = (2u³ − 3u² + 1) y0 + (u³ − 2u² + u) h d0 + (3u² − 2u³) y1 + (u³ − u²) h d1

    Error O(h⁴) for a smooth function. Broadcasts over all arguments.
    """
    u2, u3 = u * u, u * u * u
    return (
        (2 * u3 - 3 * u2 + 1) * y0
        + (u3 - 2 * u2 + u) * h * d0
        + (3 * u2 - 2 * u3) * y1
        + (u3 - u2) * h * d1
    )


def central_slopes(y, h):
    """dy/dx at the interior points of values on a uniform grid of spacing ``h`` along
    axis −2: the fourth-order central difference (y_{k−2} − 8y_{k−1} + 8y_{k+1} − y_{k+2})
    / 12h, for k = 2 … K−3 (K − 4 values). NumPy or JAX arrays."""
    return (y[..., :-4, :] - 8 * y[..., 1:-3, :] + 8 * y[..., 3:-1, :] - y[..., 4:, :]) / (12 * h)
