"""The installed version of unlearn-peft (recorded in every sidecar)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("unlearn-peft")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"
