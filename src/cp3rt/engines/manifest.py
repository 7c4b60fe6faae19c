"""Moved to :mod:`cp3rt.manifest` (the ground floor); kept only until the last caller follows."""

from cp3rt.manifest import EngineManifest, Precision, Role, ShapeRange, manifest_path_for, sha256_file

__all__ = ["EngineManifest", "Precision", "Role", "ShapeRange", "manifest_path_for", "sha256_file"]
