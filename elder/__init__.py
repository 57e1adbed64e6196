"""elder: lifelong model editing with ELDER and the methods it is compared with."""

from elder.config import ELDERConfig
from elder.editor import Editor, EditRecord, Encoded, ForwardOutput, GenerateOutput
from elder.method import ELDER
from elder.models import LoadedModel, load_model
from elder.saved import load, load_base, save

__all__ = [
    "ELDER",
    "ELDERConfig",
    "Editor",
    "EditRecord",
    "Encoded",
    "ForwardOutput",
    "GenerateOutput",
    "LoadedModel",
    "load",
    "load_base",
    "load_model",
    "save",
]
