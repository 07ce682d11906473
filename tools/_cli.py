"""Argument pieces shared by the tools; light on purpose (no torch, no registries), so that
``--help`` and argument errors come at once."""
from mmengine.config import DictAction


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` for ``--cfg-options``, with a usage error instead of its
    ``ValueError`` traceback for an item without ``=`` (``key value`` instead of ``key=value``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        bad = [v for v in values if '=' not in v]
        if bad:
            parser.error(f'{option_string} takes KEY=VALUE items; {bad[0]!r} has no "=" (write '
                         f'{bad[0]}=VALUE; a list as key=[a,b], quoted if it has spaces)')
        super().__call__(parser, namespace, values, option_string)
