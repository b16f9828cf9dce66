"""Signed, versioned device images: the agent, its pinned dependencies, model bundles and a default
configuration for one hardware profile, packed as a RAUC bundle (docs/images.md)."""
