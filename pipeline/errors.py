"""The one exception type for problems a user can cause (params, inputs, missing data)."""


class PipelineError(Exception):
    """A user-fixable problem. The CLI prints it as one line and exits non-zero."""
