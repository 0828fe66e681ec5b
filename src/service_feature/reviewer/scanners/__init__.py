"""Scanners of one patch, one module each: every `scan(...)` returns findings and does no network I/O.

They read the parsed diff and, where they need whole files, the patched (or base) checkout. Findings are
limited to what the patch adds, so a repository's old debts are not blamed on the agent.
"""
