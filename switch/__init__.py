"""ISO 8583 acquiring switch."""

__version__ = "0.1.0"
