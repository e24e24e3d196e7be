"""Simple Recurrent Units for PyTorch: ``from sru import SRU, SRUCell``; the 2018 cell of sru 2.x (a drop-in for
PyPI sru 2.6.0) and the 2017 cell of *Training RNNs as Fast as CNNs* (``cell="2017"``)."""
from .modules import SRU, SRUCell, state_dict_from_sru3
from .ops import BACKENDS, recurrence
from .reference import recurrence_reference

__all__ = ["SRU", "SRUCell", "state_dict_from_sru3", "BACKENDS", "recurrence", "recurrence_reference"]
__version__ = "0.2.0"
