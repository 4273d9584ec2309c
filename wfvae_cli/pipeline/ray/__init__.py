"""The Ray executor of the encode pipeline (docs/ray.md)."""
