"""resource.Quantity: parse "500m", "1.5Gi", "2e3" exactly and print them the way Kubernetes does.

Used where a quantity must be compared (a pod's QoS class) or shown (tables
print capacities and quota in canonical form, e.g. "1536Mi" for "1.5Gi",
"1" for "1000m"). Values are exact Fractions, rounded up to nano units as
Kubernetes rounds on parse.
"""
from __future__ import annotations

import re
from fractions import Fraction

DECIMAL_SI, BINARY_SI, DECIMAL_EXPONENT = "DecimalSI", "BinarySI", "DecimalExponent"

_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXPONENT = {v: k for k, v in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_EXPONENT = {v: k for k, v in _BINARY_SUFFIXES.items()}
_RE = re.compile(r"^([+-]?)(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[a-zA-Z]*)$")
_NANO = Fraction(1, 10 ** 9)


def parse(text: str) -> tuple[Fraction, str]:
    """The exact value and the format ("DecimalSI", "BinarySI", "DecimalExponent") of a quantity.

    Raises ValueError with apimachinery's message for text that is not a quantity.
    """
    match = _RE.match(text.strip() if isinstance(text, str) else "")
    if not match:
        raise ValueError("quantities must match the regular expression "
                         "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    sign, number, suffix = match.groups()
    value = Fraction(number)
    if suffix in _BINARY_SUFFIXES:
        value, fmt = value * 2 ** _BINARY_SUFFIXES[suffix], BINARY_SI
    elif suffix in _DECIMAL_SUFFIXES:
        value, fmt = value * Fraction(10) ** _DECIMAL_SUFFIXES[suffix], DECIMAL_SI
    elif suffix[:1] in "eE" and len(suffix) > 1:
        value, fmt = value * Fraction(10) ** int(suffix[1:]), DECIMAL_EXPONENT
    else:
        raise ValueError("unable to parse quantity's suffix")
    # Kubernetes keeps at most nano precision and rounds away from zero.
    scaled = value / _NANO
    if scaled.denominator != 1:
        scaled = Fraction(-(-scaled.numerator // scaled.denominator))
    value = scaled * _NANO
    return (-value if sign == "-" else value), fmt


def value_of(text: str) -> Fraction:
    return parse(text)[0]


def _strip_factor(n: int, base: int) -> tuple[int, int]:
    times = 0
    while n != 0 and n % base == 0:
        n //= base
        times += 1
    return n, times


def format_value(value: Fraction, fmt: str = DECIMAL_SI) -> str:
    """Quantity.String(): the canonical text of `value` in `fmt` (CanonicalizeBytes)."""
    if value == 0:
        return "0"
    if fmt == BINARY_SI and (-1024 < value < 1024 or value.denominator != 1):
        fmt = DECIMAL_SI  # binary suffixes would need rounding: show it in decimal
    if fmt == BINARY_SI:
        amount, exponent = _strip_factor(int(value), 1024)
        suffix = _BINARY_BY_EXPONENT.get(exponent * 10)
        if suffix is None:  # beyond Ei: fall back to decimal
            return format_value(value, DECIMAL_SI)
        return f"{amount}{suffix}"
    mantissa, exponent = _strip_factor(int(value / _NANO), 10)
    exponent -= 9
    shift = exponent % 3  # lower the exponent to a multiple of 3
    mantissa, exponent = mantissa * 10 ** shift, exponent - shift
    if fmt == DECIMAL_SI and exponent in _DECIMAL_BY_EXPONENT:
        return f"{mantissa}{_DECIMAL_BY_EXPONENT[exponent]}"
    return f"{mantissa}" if exponent == 0 else f"{mantissa}e{exponent}"


def canonical(text: str) -> str:
    """The text Kubernetes would store and print for the quantity `text`."""
    value, fmt = parse(text)
    return format_value(value, fmt)
