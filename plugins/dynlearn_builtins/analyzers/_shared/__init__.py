"""Pieces shared by several analyzer families (no family's own name): attractors found by simulation
(:mod:`.attractors`, used by ``koopman_separatrix`` and ``min_action``) and the sweep frames of views
(:mod:`.views`)."""
