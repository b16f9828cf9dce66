"""voicefleet: edge-and-cloud text-to-speech."""

__version__ = "0.1.0"
