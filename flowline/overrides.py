"""Template overrides for the SDK: the rule lives in the core (`core/overrides.py`), shared with the
gateway's `POST /v1/workflows/templates/{id}/instantiate`; this module keeps the SDK's import path."""

from core.overrides import KEYS, LEVELS, OverrideError, apply_overrides

__all__ = ["KEYS", "LEVELS", "OverrideError", "apply_overrides"]
