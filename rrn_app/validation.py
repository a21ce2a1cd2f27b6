"""Deprecated name of `rrn_app.option_checks`, kept so that plugins written against it keep working."""
from rrn_app.option_checks import *  # noqa: F401,F403
from rrn_app.option_checks import __all__  # noqa: F401
