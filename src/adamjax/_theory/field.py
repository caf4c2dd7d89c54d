"""What the flow, the zero finders and the APT pipeline accept as a vector field."""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp

from .._engine.pytree import identity, is_flat


class AbstractField(eqx.Module):
    """A vector field with a standard error: ``field(theta) -> (f, se)`` and
    ``field.value(theta) -> f`` for θ of shape (…, dim).

    Concrete fields: :class:`~adamjax.VectorField` (the CRN estimator) and
    :class:`~adamjax.TabulatedField` (its table for separable problems) and
    :class:`~adamjax.GridField` (its table for problems of two parameters).
    """

    @abc.abstractmethod
    def __call__(self, theta):
        """(f(θ), SE) for θ of shape (…, dim)."""

    @abc.abstractmethod
    def value(self, theta):
        """f(θ) only (what ODE solvers integrate)."""

    def eval_bytes(self) -> int:
        """Memory one evaluation at one θ needs (bounds how many flows run at once):
        small unless the field says otherwise."""
        return 0

    def to_flat(self, theta):
        """``(flat, restore)``: θ as a (…, dim) array, and the map of results back to the
        caller's structure. This field takes flat θ only; a field of a problem with a
        PyTree structure also takes θ in that structure."""
        if not is_flat(theta):
            raise ValueError(f"{type(self).__name__}: θ must be an array (…, dim)")
        return jnp.asarray(theta), identity
