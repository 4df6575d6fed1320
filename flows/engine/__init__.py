"""Our small operator layer over Bytewax.

Dataflows are written against these functions and classes, not against Bytewax directly, so the
engine stays replaceable (Bytewax is community-maintained since 2025).
"""
