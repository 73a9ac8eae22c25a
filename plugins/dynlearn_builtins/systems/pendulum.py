r"""The damped driven pendulum: a flow on the cylinder with a stable equilibrium and a rotating limit cycle.

.. math::

    \dot\theta = \omega, \qquad \dot\omega = -\gamma\,\omega + T - \sin\theta

with damping :math:`\gamma` (``damping``) and constant torque :math:`T` (``torque``). The angle
:math:`\theta` is periodic (declared ``periodic = {"theta": (-pi, pi)}``: every analyzer takes distances and
attractor identity modulo :math:`2\pi`, so :math:`\theta^* + 2\pi k` is one equilibrium and a rotation is a
closed orbit).

Known facts (the defaults :math:`\gamma = 0.1`, :math:`T = 0.5`):

- for :math:`|T| < 1` the equilibria are :math:`\theta = \psi = \arcsin T` (a stable focus, eigenvalues
  :math:`-\gamma/2 \pm i\sqrt{\cos\psi - \gamma^2/4}`) and :math:`\theta = \pi - \psi` (a saddle);
- for :math:`T > 4\gamma/\pi` (Melnikov, small :math:`\gamma`) a stable rotating limit cycle coexists with the
  focus; on it the mean angular velocity is :math:`\langle\omega\rangle \approx T / \gamma` (= 5);
- basin stability (Menck et al., Nature Physics 9, 89 (2013)) over
  :math:`[\psi - \pi, \psi + \pi] \times [-10, 10]`: about 0.156 for the focus and 0.844 for the limit cycle
  (100,000 uniform states, ``dopri5`` with ``rtol = 1e-8`` to :math:`t = 1000`).

Examples
--------
>>> import math, torch
>>> sys = DrivenPendulum()
>>> psi = math.asin(0.5)
>>> sys.rhs(torch.tensor([[psi, 0.0]], dtype=torch.float64), sys.param_tensors((1,))).abs().max().item() < 1e-15
True
>>> sys.circle.mask.tolist()
[True, False]
"""

from __future__ import annotations

import math

import torch

from dynlearn.params import Param
from dynlearn.system import FlowSystem

__all__ = ["DrivenPendulum"]


class DrivenPendulum(FlowSystem):
    r"""Damped pendulum driven by a constant torque: :math:`\theta' = \omega`,
    :math:`\omega' = -\gamma\omega + T - \sin\theta`, with :math:`\theta` on the circle :math:`[-\pi, \pi)`."""

    name = "pendulum"
    description = "damped driven pendulum theta' = omega, omega' = -damping omega + torque - sin theta (theta periodic)"
    state_names = ("theta", "omega")
    parameters = {
        "damping": Param(0.1, low=0, description="damping coefficient gamma"),
        "torque": Param(0.5, description="constant driving torque T"),
    }
    periodic = {"theta": (-math.pi, math.pi)}
    domain_bounds = ([-math.pi, -10.0], [math.pi, 10.0])
    state_units = "rad, rad / time"

    def rhs(self, x, p):
        theta, omega = x[..., 0], x[..., 1]
        return torch.stack([omega, -p["damping"] * omega + p["torque"] - torch.sin(theta)], dim=-1)
