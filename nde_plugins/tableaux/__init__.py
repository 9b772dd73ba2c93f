"""Runge-Kutta tableaux: the value type, parameterized families and Butcher order conditions."""

from ._family import DomainRule, TableauFamily
from ._order import OrderResidual, order_residuals, trees_of_order, trees_up_to
from ._stability import (
    error_coefficient_norm,
    principal_error_coefficients,
    real_stability_interval,
    stability_function,
    stability_polynomial,
)
from ._tableau import Tableau, TableauError, TableauWarning

__all__ = [
    "DomainRule",
    "OrderResidual",
    "Tableau",
    "TableauError",
    "TableauFamily",
    "TableauWarning",
    "error_coefficient_norm",
    "order_residuals",
    "principal_error_coefficients",
    "real_stability_interval",
    "stability_function",
    "stability_polynomial",
    "trees_of_order",
    "trees_up_to",
]
