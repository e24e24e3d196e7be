"""Simple Recurrent Units (Lei & Zhang, 2017) for PyTorch: ``from sru import SRU, SRUCell``."""
from .modules import SRU, SRUCell
from .ops import BACKENDS, recurrence
from .reference import recurrence_reference

__all__ = ["SRU", "SRUCell", "BACKENDS", "recurrence", "recurrence_reference"]
__version__ = "0.1.0"
