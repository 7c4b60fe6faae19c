"""Model zoo: names, metadata and where weight files come from (torch-free)."""

from cp3rt.zoo.download import ProgressFn, zoo_url
from cp3rt.cache import cache_dir
from cp3rt.zoo.locations import Location, models_cache_dir, search_dirs
from cp3rt.zoo.registry import ZOO, ModelInfo, Registry, runtime_diameters, zoo_basename
from cp3rt.zoo.resolve import inventory, locate, resolve_size_model, resolve_weights
from cp3rt.zoo.size import SizeModel

__all__ = [
    "ZOO",
    "Location",
    "ModelInfo",
    "ProgressFn",
    "Registry",
    "SizeModel",
    "cache_dir",
    "inventory",
    "locate",
    "models_cache_dir",
    "resolve_size_model",
    "resolve_weights",
    "runtime_diameters",
    "search_dirs",
    "zoo_basename",
    "zoo_url",
]
