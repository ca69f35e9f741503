# SPDX-License-Identifier: MIT
"""The Python module's wire format against <orphand/orphand.h>: every ORPHAND_* constant, every
struct's size and every member's offset and order, and the text of every reason, as wire_dump
(compiled against the header and linked with liborphand) prints them. The header itself says
which names there are: a constant or member added to it fails this test until wire_dump and the
module have it too.

Usage: test_python_wire.py WIRE_DUMP"""

import os
import re
import subprocess
import sys

import orphand
import orphtest as ot

HEADER = os.path.join(os.environ.get("ORPHAND_SOURCE_DIR", "."), "include", "orphand", "orphand.h")
GUARD = "ORPHAND_ORPHAND_H"
# liborphand's argument to orphand_bind(), not a message: the module takes its fields as
# arguments (wire_dump prints it all the same, so that the header's list is complete).
NOT_MESSAGES = {"policy"}
ENUMS = {"ACTION_": orphand.Action, "REASON_": orphand.Reason, "SCOPE_": orphand.Scope,
         "FEATURE_": orphand.Feature, "STATUS_SCOPE_": orphand.StatusScope}


def header_names(text):
    """The header's object-like ORPHAND_* macros, and its structs' members in order."""
    macros = set(re.findall(r"^#define (ORPHAND_\w+)(?=\s)", text, re.M)) - {GUARD}
    structs = {}
    for m in re.finditer(r"^struct orphand_(\w+) \{(.*?)^\};", text, re.M | re.S):
        body = re.sub(r"/\*.*?\*/", "", m.group(2), flags=re.S)
        structs[m.group(1)] = re.findall(r"(\w+)\s*(?:\[[^\]]*\])?\s*;", body)
    return macros, structs


def dump(exe):
    out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout
    macros, sizes, offsets, reasons = {}, {}, {}, {}
    for line in out.splitlines():
        kind, rest = line.split(" ", 1)
        if kind == "macro":
            name, value = rest.split(" ")
            macros[name] = int(value)
        elif kind == "string":
            name, value = rest.split(" ", 1)
            macros[name] = value
        elif kind == "size":
            name, value = rest.split(" ")
            sizes[name] = int(value)
        elif kind == "offset":
            name, field, value = rest.split(" ")
            offsets.setdefault(name, []).append((field, int(value)))
        elif kind == "reason":
            number, text = rest.split(" ", 1)
            reasons[int(number)] = text
    return macros, sizes, offsets, reasons


def marked(default):
    """A value like `default` (a field's) whose first byte on the wire is not 0."""
    if isinstance(default, str):
        return "Z"
    if isinstance(default, tuple) and not hasattr(default, "_fields"):
        return (0x5A,) + default[1:]
    if hasattr(default, "_fields"):  # a nested message
        return type(default)(marked(default[0]), *default[1:])
    return 0x5A


def main():
    with open(HEADER) as f:
        names, structs = header_names(f.read())
    macros, sizes, offsets, reasons = dump(sys.argv[1])
    ot.check(len(names) > 50 and len(structs) == 7, f"header parsed as {names} {structs}")
    ot.check(set(macros) == names, f"wire_dump misses {names - set(macros)}, has extra "
             f"{set(macros) - names}")
    ot.check({s: [f for f, _ in fields] for s, fields in offsets.items()} == structs,
             f"wire_dump's members {offsets} are not the header's {structs}")

    # Every constant, under its C name minus ORPHAND_.
    for name, value in sorted(macros.items()):
        short = name[len("ORPHAND_"):]
        ot.check(hasattr(orphand, short), f"orphand.{short} ({name}) is missing")
        got = getattr(orphand, short)
        ot.check(got == value and type(got) is not bool,
                 f"orphand.{short} is {got!r}, {name} is {value!r}")
    # The enums hold exactly the header's constants of their kind.
    for prefix, enum in ENUMS.items():
        full = "ORPHAND_" + prefix
        want = {n[len(full):]: v for n, v in macros.items()
                if n.startswith(full) and n != "ORPHAND_SCOPE_COUNT"}
        got = {m.name: int(m) for m in enum}
        ot.check(got == want, f"orphand.{enum.__name__} is {got}, the header has {want}")
    ot.check(orphand.SCOPE_COUNT == len(orphand.Scope), "SCOPE_COUNT is not the scopes' number")

    # Every message: size, and each member's offset, in the header's order.
    types = {c: t for t, c in orphand.C_NAMES.items()}
    ot.check(set(types) == set(structs) - NOT_MESSAGES,
             f"module messages {sorted(types)}, header structs {sorted(structs)}")
    for cname, cls in types.items():
        ot.check(orphand.sizeof(cls) == sizes[cname],
                 f"sizeof {cls.__name__} is {orphand.sizeof(cls)}, C says {sizes[cname]}")
        ot.check(list(cls._fields) == structs[cname],
                 f"{cls.__name__} fields {cls._fields}, C members {structs[cname]}")
        for field, offset in offsets[cname]:
            ot.check(orphand.offsetof(cls, field) == offset,
                     f"offsetof {cls.__name__}.{field} is {orphand.offsetof(cls, field)}, C "
                     f"says {offset}")
        # pack() puts each field at its offset, and unpack() reads it back.
        for field, offset in offsets[cname]:
            data = cls(**{field: marked(cls._field_defaults[field])}).pack()
            first = len(data) - len(data.lstrip(b"\0"))
            ot.check(len(data) == sizes[cname] and first == offset if sys.byteorder == "little"
                     else offset <= first < offset + 8,
                     f"{cls.__name__}(.{field}) packs its first byte at {first}, not {offset}")
            ot.check(orphand.unpack(cls, data) == cls(**{field: marked(
                cls._field_defaults[field])}), f"{cls.__name__}.{field} does not unpack")

    # The text of every reason, and of numbers that are none.
    for number, text in reasons.items():
        ot.check(orphand.reason_text(number) == text,
                 f"reason {number}: {orphand.reason_text(number)!r}, liborphand says {text!r}")
    print(f"{len(macros)} constants, {len(types)} messages with {sum(map(len, offsets.values()))}"
          f" members and {len(reasons)} reason texts: as in orphand.h and liborphand")


if __name__ == "__main__":
    ot.run(main)
