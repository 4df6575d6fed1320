"""Python hooks for what a mapping's YAML cannot say, referenced as ``module:function``.

A hook receives the field's ``from`` values positionally (None for null, after the ''-to-null rule)
and returns a value of the field's ``returns`` kind, or None when it cannot decide (a mapping
failure when any input was present). The engine calls it once per distinct input combination per
batch, so it must be a pure function of its arguments.
"""

from __future__ import annotations

import re

# Legal forms at the end of an organisation's name, as the demo ERP (and real ones) write them.
_LEGAL_FORM = re.compile(
    r"(?i)\b(inc|incorporated|llc|l\.l\.c|llp|lp|ltd|limited|corp|corporation|co|plc|p\.l\.c|gmbh|g\.m\.b\.h"
    r"|ag|a\.g|kg|ohg|se|sa|s\.a|sl|s\.l|bv|b\.v|nv|srl|s\.r\.l|spa|s\.p\.a|ltda|oy|ab|as|sp\. ?z o\.o)\.?$"
)
_CONJUNCTION = re.compile(r"(?i)(\b(and|und|et|y|e)\b|&)")


def erp_debtor_kind(name1: str | None, vat_reg_no: str | None) -> str | None:
    """``person`` or ``organisation`` for an ERP debtor.

    The ERP has no type column: private debtors are written ``FAMILY, GIVEN`` in ``name1`` and have
    no VAT number. A VAT number, a legal form (``... GmbH``), no comma, several commas or a
    conjunction after the comma (``Smith, Jones and Partners``) make an organisation.
    """
    if name1 is None:
        return None
    if vat_reg_no:
        return "organisation"
    family, comma, given = name1.partition(",")
    if not comma or "," in given or not family.strip() or not given.strip():
        return "organisation"
    if _LEGAL_FORM.search(name1.strip()) or _CONJUNCTION.search(given):
        return "organisation"
    return "person"
