"""hetacumn: ab initio heterogeneous cryo-EM reconstruction by amortized inference."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hetacumn")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
