"""Runge-Kutta tableaux: the value type, parameterized families and Butcher order conditions."""

from ._family import DomainRule, TableauFamily
from ._order import OrderResidual, order_residuals, trees_of_order, trees_up_to
from ._tableau import Tableau, TableauError, TableauWarning

__all__ = [
    "DomainRule",
    "OrderResidual",
    "Tableau",
    "TableauError",
    "TableauFamily",
    "TableauWarning",
    "order_residuals",
    "trees_of_order",
    "trees_up_to",
]
