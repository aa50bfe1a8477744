"""Planning: allocation ledger, per-node and per-site plans. Pure functions over values."""

from flatroute.plan.ledger import load_ledger, save_ledger
from flatroute.plan.model import Ledger, NodePlan, Plan, SitePlan
from flatroute.plan.planner import plan

__all__ = ["Ledger", "NodePlan", "Plan", "SitePlan", "load_ledger", "plan", "save_ledger"]
