"""adamjax: massively parallel Adam runs, the Adam vector field ODE and the APT error.

Public API (everything else lives in private modules):

* engine — :func:`simulate`, :class:`SimConfig`, :class:`RunParams`, :class:`RunResult`,
  :class:`Observer`, :func:`run_keys`;
* optimisers — :func:`scale_by_adam` and the family, :func:`make_optimizer`,
  :class:`OptHParams`; schedules — :func:`step_size`, :class:`SchedHParams`;
* problems — :class:`Problem`, :class:`StreamProblem`, :class:`FiniteSumProblem`,
  the built-ins and :func:`make_problem`;
* specs — :func:`run` (spec → ``xarray.Dataset``), :func:`load_spec`, :class:`SpecError`.
"""

from ._apt import APTRecorder, apt_error, fit_decay, window_starts
from ._flow import FlowResult, flow
from ._optimizers import (
    OPTIMIZERS,
    FamilyState,
    OptHParams,
    Transformation,
    make_optimizer,
    scale_by_adagrad,
    scale_by_adam,
    scale_by_amsgrad,
    scale_by_rmsprop,
    scale_by_sgd,
    scale_by_sgdm,
    scale_by_signsgd,
)
from ._problems import (
    PROBLEMS,
    FiniteSumProblem,
    LinearRegression,
    Problem,
    Quadratic,
    Reddi,
    Regression,
    StreamProblem,
    Zhang,
    make_problem,
)
from ._run import Plan, Recorder, execute, make_plan, run, to_dataset
from ._sampling import SCHEMES, run_keys
from ._schedules import SCHEDULES, SchedHParams, step_size, training_times
from ._simulate import (
    Observer,
    RunParams,
    RunResult,
    SimConfig,
    default_block,
    log_spaced_steps,
    simulate,
    simulate_batch,
)
from ._spec import AssumptionWarning, SpecError, load_spec
from ._vector_field import (
    TabulatedField,
    VectorField,
    lyapunov,
    vector_field,
    vf_zero,
)

__version__ = "0.1.0"

__all__ = [
    "APTRecorder",
    "FlowResult",
    "TabulatedField",
    "VectorField",
    "apt_error",
    "fit_decay",
    "flow",
    "lyapunov",
    "vector_field",
    "vf_zero",
    "window_starts",
    "OPTIMIZERS",
    "PROBLEMS",
    "SCHEDULES",
    "SCHEMES",
    "AssumptionWarning",
    "FamilyState",
    "FiniteSumProblem",
    "LinearRegression",
    "Observer",
    "OptHParams",
    "Plan",
    "Problem",
    "Quadratic",
    "Recorder",
    "Reddi",
    "Regression",
    "RunParams",
    "RunResult",
    "SchedHParams",
    "SimConfig",
    "SpecError",
    "StreamProblem",
    "Transformation",
    "Zhang",
    "default_block",
    "execute",
    "load_spec",
    "log_spaced_steps",
    "make_optimizer",
    "make_plan",
    "make_problem",
    "run",
    "run_keys",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_amsgrad",
    "scale_by_rmsprop",
    "scale_by_sgd",
    "scale_by_sgdm",
    "scale_by_signsgd",
    "simulate",
    "simulate_batch",
    "step_size",
    "to_dataset",
    "training_times",
]
