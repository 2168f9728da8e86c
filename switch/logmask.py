"""What a log line may show of a message, and a logging filter that masks the rest.

:func:`mask_fields` is for logging whole messages (PCI DSS 3.3, 3.4, 3.2):
- PANs (F2, F34) as first 6 + last 4;
- track data (F35, F36, F45) as the masked PAN and ``*`` for the rest (the
  discretionary data may hold a PVV or CVV);
- PIN block (F52) and ICC data (F55) as ``*`` only;
- in the dialect's e-commerce field (F48 tags ``C2``/``AV`` for the acquirer,
  F126 for Visa...) the CVV2 and CAVV values as ``*``, other tags kept;
- any other value still goes through :func:`switch.cards.mask_text`, so a PAN
  in an unexpected field (F102, private fields) is masked too.
The expiry (F14) is not sensitive on its own and is kept.

Without a spec the e-commerce layout is unknown: F48 and F126 are masked
whole, which hides more than needed and never less.

:class:`MaskingFilter` is the net under everything else: attached to a log
*handler*, it masks every PAN-looking run of 13+ digits in each record's
final text, exception text included.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from specs import Spec
from switch import codec, ecommerce
from switch.cards import mask_pan, mask_text

__all__ = ["MaskingFilter", "mask_fields"]

_PAN_FIELDS = frozenset({"2", "34"})
# Masked whole when there is no spec to say what is inside them.
_HIDDEN_WITHOUT_SPEC = frozenset({"35", "36", "45", "48", "52", "55", "126"})


def mask_fields(message: Mapping[str, str], spec: Spec | None = None) -> dict[str, str]:
    """A copy of ``message`` fit for a log line; the caller's dict is not changed."""
    if spec is None:
        return {key: _without_spec(key, value) for key, value in message.items()}
    shown = {key: mask_text(value) for key, value in codec.masked(message, spec).items()}
    eco = spec.ecommerce
    if eco is not None and message.get(eco.field):
        shown[eco.field] = ecommerce.mask_secrets(spec, message[eco.field], mask_text)
    return shown


def _without_spec(key: str, value: str) -> str:
    if key in _PAN_FIELDS:
        return mask_pan(value)
    if key in _HIDDEN_WITHOUT_SPEC:
        return "*" * len(value)
    return mask_text(value)


class MaskingFilter(logging.Filter):
    """Masks PAN-looking digit runs in every record's message and exception text.

    Attach it to handlers (``handler.addFilter(MaskingFilter())``): a handler's
    filters see records from every logger, a logger's only its own. The record
    is rewritten in place to its final, masked text (``args`` emptied), so any
    formatter after it sees only masked text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format
            text = f"{record.msg} {record.args}"
        record.msg = mask_text(text)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True
