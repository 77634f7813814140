"""Extreme and malformed values, drawn from a seeded `random.Random`.

Every generator takes the case's own `rng`, so a (generator, seed) pair always yields the same case.
"""

# Numbers as a user might type them on a command line or write them into a file: the IEEE specials,
# the edges of Int32/Int64/UInt64, magnitudes past every edge, and strings that are not numbers.
FLAG_NUMBERS = [
    "nan", "NaN", "inf", "-inf", "+inf", "1e30", "-1e30", "1e308", "1e-320", "-0", "0", "-1", "1",
    "2147483647", "2147483648", "4294967296", "9223372036854775807", "9223372036854775808",
    "18446744073709551616", "-9223372036854775808", "99999999999999999999999999", "0.5", "-0.5",
    "", " ", "abc", "0x10", "1_000", "1e", "--", "\u0661", "1,5",
]

# JSON values that a numeric field may hold instead of a sane number.
JSON_NUMBERS = [
    0, -1, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53 + 1, 2 ** 63 - 1, 2 ** 63, 2 ** 64, -2 ** 63,
    10 ** 30, 1e30, -1e30, 1e308, 0.5, -0.5, 1e-320, "12", "nan", None, True, [], {}, [1, 2],
]

# Spellings of non-finite numbers that Python's json module writes (not standard JSON, but seen).
JSON_SPECIAL_LITERALS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "00", "1.", ".5", "+1"]

CSV_CELLS = [
    "", " ", "nan", "inf", "-inf", "1e30", "-1", "0", "9223372036854775807", "18446744073709551616",
    "-9223372036854775808", "abc", "1.5", "\"", "\"\"", "1e308", "0x1F", "2023-13-45 99:99:99",
    "2023-11-16 18:17:03.9799600", "1970-01-01 00:00:00", "9999-12-31 23:59:59.9999999",
]


def flag_number(rng):
    return rng.choice(FLAG_NUMBERS)


def json_number(rng):
    return rng.choice(JSON_NUMBERS)


def csv_cell(rng):
    return rng.choice(CSV_CELLS)


def garbage_bytes(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def odd_text(rng):
    """Text a parser may choke on: control bytes, invalid UTF-8, a BOM, very long runs."""
    return rng.choice([
        b"", b"\n", b"\r\n\r\n", b"\xef\xbb\xbf", b"\x00\x00\x00", b"\xff\xfe\xfd", b"\xc3(",
        b"\xed\xa0\x80", b"{" * 2000, b"[" * 100000, b"a" * 300000, b"\t" * 100, b"\"\\u0000\"",
        b"\x1b[2J", b"\xf4\x90\x80\x80",
    ])
