"""Example third-party plugin: the supercritical pitchfork normal form."""

import dynlearn


class Pitchfork(dynlearn.FlowSystem):
    """dx/dt = r x - x^3."""

    name = "pitchfork"
    description = "supercritical pitchfork normal form dx/dt = r x - x^3 (example third-party plugin)"
    state_names = ("x",)
    parameters = {"r": dynlearn.Param(1.0, description="bifurcation parameter r")}
    domain_bounds = ([-2.0], [2.0])

    def rhs(self, x, p):
        return p["r"][..., None] * x - x**3
