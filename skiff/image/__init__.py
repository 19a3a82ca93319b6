"""Images: references, manifests and configs, the content store, layer apply
and diff. Nothing here mounts anything (that is skiff.storage)."""
