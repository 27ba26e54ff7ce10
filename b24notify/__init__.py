"""b24notify: alerts the moment a Bitrix24 task result appears or is closed."""

__version__ = "0.1.0"
