"""The one exception type for configuration problems, shared by every loader."""


class ConfigError(Exception):
    """A configuration file or setting is unusable.

    ``str()`` is a single line that names the file (or environment variable) and the key, so an
    operator can fix it without reading a traceback.
    """

    def __init__(self, source: str, key: str | None, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")
