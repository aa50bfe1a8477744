"""The fabric description: the agreement between the network team and the platform team."""

from flatroute.fabric.loader import load_fabric, parse_fabric
from flatroute.fabric.model import Fabric

__all__ = ["Fabric", "load_fabric", "parse_fabric"]
