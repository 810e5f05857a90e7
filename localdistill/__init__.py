"""localdistill: personalised distillation (PERsD) of small code models on your own machines."""

from localdistill import offline as _offline

__version__ = "0.1.0"

_offline.enforce()
