"""The cubic Hermite interpolant, shared by the field tables and the APT flow grids."""

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
