"""adamjax: massively parallel Adam runs, the Adam vector field ODE and the APT error.

The package has three layers, imports pointing down only (``tests/test_layers.py``):

* ``adamjax._engine`` — optimisers, schedules, sampling, problems (and their registry),
  the simulator and the multi-device runner;
* ``adamjax._theory`` — the Adam vector field, its zeros, the ODE flow, the APT error;
* ``adamjax._launch`` — spec schema and validation, plans, recorders, the dataset,
  the store, sweeps over units and processes, ``jax.distributed``.

Everything public is re-exported here; the command line (``adamjax.cli``), the demo
(``adamjax.demo``), the figure scripts in ``experiments/`` and the benchmarks use only
these names.
"""

from importlib.metadata import PackageNotFoundError as _NotInstalled
from importlib.metadata import version as _version

from ._engine.devices import cpu_cores as cpu_cores
from ._engine.devices import use_cpu_cores as use_cpu_cores
from ._engine.driver import simulate as simulate
from ._engine.errors import AssumptionWarning as AssumptionWarning
from ._engine.errors import SpecError as SpecError
from ._engine.optimizers import OPTIMIZERS as OPTIMIZERS
from ._engine.optimizers import FamilyState as FamilyState
from ._engine.optimizers import OptHParams as OptHParams
from ._engine.optimizers import Transformation as Transformation
from ._engine.optimizers import make_optimizer as make_optimizer
from ._engine.optimizers import scale_by_adagrad as scale_by_adagrad
from ._engine.optimizers import scale_by_adam as scale_by_adam
from ._engine.optimizers import scale_by_amsgrad as scale_by_amsgrad
from ._engine.optimizers import scale_by_rmsprop as scale_by_rmsprop
from ._engine.optimizers import scale_by_sgd as scale_by_sgd
from ._engine.optimizers import scale_by_sgdm as scale_by_sgdm
from ._engine.optimizers import scale_by_signsgd as scale_by_signsgd
from ._engine.params import Param as Param
from ._engine.problems.base import AbstractFiniteSumProblem as AbstractFiniteSumProblem
from ._engine.problems.base import AbstractLayeredProblem as AbstractLayeredProblem
from ._engine.problems.base import FiniteSumProblem as FiniteSumProblem
from ._engine.problems.base import Problem as Problem
from ._engine.problems.base import StreamProblem as StreamProblem
from ._engine.problems.builtin import Builtin as Builtin
from ._engine.problems.digits import Digits as Digits
from ._engine.problems.linear_regression import LinearRegression as LinearRegression
from ._engine.problems.pytree import PyTreeFiniteSumProblem as PyTreeFiniteSumProblem
from ._engine.problems.pytree import finite_sum_problem as finite_sum_problem
from ._engine.problems.quadratic import Quadratic as Quadratic
from ._engine.problems.reddi import Reddi as Reddi
from ._engine.problems.registry import BUILTINS as BUILTINS
from ._engine.problems.registry import make_problem as make_problem
from ._engine.problems.registry import problem_dim as problem_dim
from ._engine.problems.registry import register_problem as register_problem
from ._engine.problems.regression import Regression as Regression
from ._engine.problems.zhang import Zhang as Zhang
from ._engine.sampling import SCHEMES as SCHEMES
from ._engine.sampling import run_keys as run_keys
from ._engine.schedules import SCHEDULES as SCHEDULES
from ._engine.schedules import SchedHParams as SchedHParams
from ._engine.schedules import step_size as step_size
from ._engine.schedules import training_times as training_times
from ._engine.shard import Runner as Runner
from ._engine.shard import make_runner as make_runner
from ._engine.simulate import Observer as Observer
from ._engine.simulate import RunParams as RunParams
from ._engine.simulate import RunResult as RunResult
from ._engine.simulate import SimConfig as SimConfig
from ._engine.simulate import default_block as default_block
from ._engine.simulate import log_spaced_steps as log_spaced_steps
from ._engine.simulate import simulate_batch as simulate_batch
from ._launch import plot as plot
from ._launch.cache import compilation_cache_dir as compilation_cache_dir
from ._launch.cache import enable_compilation_cache as enable_compilation_cache
from ._launch.dataset import to_dataset as to_dataset
from ._launch.distributed import initialize_distributed as initialize_distributed
from ._launch.execute import execute as execute
from ._launch.outcome import CONVERGED as CONVERGED
from ._launch.outcome import DIVERGING as DIVERGING
from ._launch.outcome import UNDECIDED as UNDECIDED
from ._launch.phase import critical_b2 as critical_b2
from ._launch.phase import phase_diagram as phase_diagram
from ._launch.plan import Plan as Plan
from ._launch.plan import default_budget as default_budget
from ._launch.plan import make_plan as make_plan
from ._launch.recorders import APTRecorder as APTRecorder
from ._launch.recorders import Recorder as Recorder
from ._launch.reference import reference as reference
from ._launch.run import run as run
from ._launch.run import vector_field as vector_field
from ._launch.spec import load_spec as load_spec
from ._launch.store import check_store as check_store
from ._launch.summary import summary as summary
from ._launch.summary import summary_table as summary_table
from ._theory.apt import APTObserver as APTObserver
from ._theory.apt import APTResult as APTResult
from ._theory.apt import FieldOptions as FieldOptions
from ._theory.apt import apt_error as apt_error
from ._theory.apt import apt_errors_from as apt_errors_from
from ._theory.apt import apt_prepare as apt_prepare
from ._theory.decay import DecayFit as DecayFit
from ._theory.decay import fit_decay as fit_decay
from ._theory.field import AbstractField as AbstractField
from ._theory.flow import FlowResult as FlowResult
from ._theory.flow import flow as flow
from ._theory.tabulated import GridField as GridField
from ._theory.tabulated import TabulatedField as TabulatedField
from ._theory.vector_field import VectorField as VectorField
from ._theory.windows import WindowOptions as WindowOptions
from ._theory.windows import window_starts as window_starts
from ._theory.zeros import Lyapunov as Lyapunov
from ._theory.zeros import Zero as Zero
from ._theory.zeros import bracket_zero as bracket_zero
from ._theory.zeros import lyapunov as lyapunov
from ._theory.zeros import vf_zero as vf_zero

# One JAX device per CPU core unless the user chose (ADAMJAX_CPU_DEVICES; _engine/devices).
use_cpu_cores()
# JAX's persistent compilation cache, on by default (ADAMJAX_COMPILATION_CACHE=off
# turns it off; docs/BENCHMARKS.md measures what it buys).
enable_compilation_cache()

try:
    __version__ = _version("adamjax")
except _NotInstalled:  # pragma: no cover - a source tree on sys.path, not installed
    __version__ = "0+unknown"
