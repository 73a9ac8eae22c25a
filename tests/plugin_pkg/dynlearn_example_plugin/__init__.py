"""Example third-party plugin: the supercritical pitchfork normal form and the trainable relaxation of
docs/plugins.md."""

import torch

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


class Relax(dynlearn.TrainableSystem, dynlearn.FlowSystem):
    """Learn k in dx/dt = -k x so that x(1) = 1/2 (the trainable system of docs/plugins.md)."""

    name = "relax"
    description = "learn k in dx/dt = -k x so that x(1) = 1/2 (example third-party plugin)"
    state_names = ("x",)
    parameters = {"k": dynlearn.Param(1.0, description="relaxation rate k")}
    hyper = {"lr": dynlearn.Param(0.5, description="learning rate", low=0, low_inclusive=False)}

    def rhs(self, x, p):
        return -p["k"][..., None] * x

    def init(self, seed, hp):
        g = torch.Generator().manual_seed(0)
        base = torch.rand(int(seed.max()) + 1, generator=g, dtype=torch.float64)
        return {"k": 0.1 + base[seed]}  # depends on the seed only

    def loss(self, theta, hp):
        return (torch.exp(-theta["k"]) - 0.5) ** 2
