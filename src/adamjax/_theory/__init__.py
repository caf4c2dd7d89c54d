"""The theory layer: the Adam vector field, its zeros, the ODE flow and the APT error.

Imports only the engine (``adamjax._engine``), never the launcher. Modules:

* ``ema``          — the circular exponential moving averages of the chain estimator;
* ``field``        — :class:`AbstractField`, what the flow and the zero finders accept;
* ``vector_field`` — the CRN estimator of f (Def. 1.3) with standard errors;
* ``moments``      — θ-free weights of its chains: the quadratic and finite-sum fast paths;
* ``tabulated``    — a cubic Hermite table of a coordinate-separable field;
* ``hermite``      — the one cubic Hermite kernel (tables and APT flow grids);
* ``zeros``        — zeros of f (Newton, bracketing) and the Lyapunov check;
* ``flow``         — the flow Φ_t of θ' = −f(θ) with diffrax, vmapped over starts, in
  batches; slopes on a grid;
* ``windows``      — where the APT error is measured: window starts and ends;
* ``apt``          — the asymptotic pseudo-trajectory error of every run (Thm 1.5);
* ``decay``        — the fitted decay exponent of the APT error;
* ``phase``        — the field over a (β1, β2) grid on common random numbers.
"""
