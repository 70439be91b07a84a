"""The local stack and the test runner: standard library only until it has made
``.venv``, and not in the image.
"""
