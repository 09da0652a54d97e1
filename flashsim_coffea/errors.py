"""Exceptions whose message is meant for the user (printed without a traceback by the CLI)."""


class UserError(Exception):
    """Bad input or environment: the message names the file/branch/value and what to do."""


class MissingBranchesError(UserError, KeyError):
    """An input file lacks branches an operation needs."""

    def __init__(self, filename: str, missing: list[str], what: str):
        self.filename, self.missing, self.what = filename, list(missing), what
        super().__init__(
            f"{filename}: missing branch(es) {', '.join(self.missing)} needed to {what}"
        )

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]

    def __reduce__(self):
        # rebuilt from the constructor arguments, so it survives pickling to/from dask workers
        return (MissingBranchesError, (self.filename, self.missing, self.what))
