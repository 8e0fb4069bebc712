"""The unlearning methods, one module each, registered by name (see `base.UnlearningMethod` to add one)."""

from .base import METHODS, ForgetTerm, UnlearningMethod, get_method, register_method
from .ga import GradientAscent
from .idk_dpo import IdkDPO
from .npo import NPO
from .simnpo import SimNPO
from .uld import ULD

# The order is that of `UnlearnConfig`'s help and error messages: the main method first.
for _method in (ULD, GradientAscent, NPO, SimNPO, IdkDPO):
    register_method(_method)

__all__ = [
    "METHODS",
    "NPO",
    "ULD",
    "ForgetTerm",
    "GradientAscent",
    "IdkDPO",
    "SimNPO",
    "UnlearningMethod",
    "get_method",
    "register_method",
]
