"""Structural facts of served kinds, derived from Kubernetes' OpenAPI document
(see generate.py) or from CustomResourceDefinitions."""
from .catalog import Catalog, ResourceInfo, Subresource, custom_resource
from .nodes import Node, definitions

__all__ = ["Catalog", "Node", "ResourceInfo", "Subresource", "custom_resource", "definitions"]
