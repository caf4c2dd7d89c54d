"""What the flow, the zero finders and the APT pipeline accept as a vector field."""

from __future__ import annotations

import abc

import equinox as eqx


class AbstractField(eqx.Module):
    """A vector field with a standard error: ``field(theta) -> (f, se)`` and
    ``field.value(theta) -> f`` for θ of shape (…, dim).

    Concrete fields: :class:`~adamjax.VectorField` (the CRN estimator) and
    :class:`~adamjax.TabulatedField` (its table for separable problems).
    """

    @abc.abstractmethod
    def __call__(self, theta):
        """(f(θ), SE) for θ of shape (…, dim)."""

    @abc.abstractmethod
    def value(self, theta):
        """f(θ) only (what ODE solvers integrate)."""
