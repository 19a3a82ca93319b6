"""Snapshots (one unpacked directory per layer chain ID) and container
layers on overlayfs."""
