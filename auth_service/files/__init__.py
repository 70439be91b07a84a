"""Configuration on disk: settings, users, groups, the anonymous rule, revocations,
reloads, atomic writes.
"""
