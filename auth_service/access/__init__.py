"""What a request may do: scopes, actions, patterns, rules, and the policy
(requested ∩ allowed).
"""
