"""`qkhyper serve`: the trio supervisor and the worker processes it owns."""

from .plan import ServePlan, make_plan
from .run import Supervisor, supervise

__all__ = ["ServePlan", "Supervisor", "make_plan", "supervise"]
