"""Diffusion: schedules, objectives (eps / v / flow), samplers (DDPM, DDIM, Euler), guidance.

Continuous time t in [0, 1] (t = 0 clean, t = 1 noise), ``x_t = alpha(t) x0 + sigma(t) eps``.
Start with ``Diffusion`` (core.py); the other modules each hold one concept.
"""

from .core import Diffusion
from .guidance import (
    cfg_predict,
    condition_names,
    drop_conditions,
    null_conditions,
    only_conditions,
)
from .objectives import (
    OBJECTIVES,
    Objective,
    eps_to_x0,
    flow_to_x0_eps,
    get_objective,
    v_to_x0_eps,
    x0_eps_to_flow,
    x0_eps_to_v,
    x0_to_eps,
)
from .samplers import (
    SAMPLERS,
    GridPoint,
    ddim_step,
    ddpm_step,
    euler_step,
    make_grid,
    time_grid,
)
from .schedules import (
    SCHEDULES,
    CosineSchedule,
    FlowSchedule,
    LinearSchedule,
    Schedule,
    get_schedule,
)

__all__ = [
    "Diffusion",
    "cfg_predict", "condition_names", "drop_conditions", "null_conditions", "only_conditions",
    "OBJECTIVES", "Objective", "get_objective", "eps_to_x0", "x0_to_eps", "v_to_x0_eps",
    "x0_eps_to_v", "flow_to_x0_eps", "x0_eps_to_flow",
    "SAMPLERS", "GridPoint", "make_grid", "ddim_step", "ddpm_step", "euler_step", "time_grid",
    "SCHEDULES", "Schedule", "CosineSchedule", "LinearSchedule", "FlowSchedule", "get_schedule",
]
