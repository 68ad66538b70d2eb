"""Flowline for its users: the typed REST client (`flowline.client`), the PRD-127 classes on top of it
(`flowline.prd`), template overrides (`flowline.overrides`) and the user CLI (`flowline.cli`).

Nothing here decides anything the engine or the gateway decides: the client speaks the HTTP API that
`gateway/openapi.py` documents, and the PRD classes are thin compositions of its calls.
"""
