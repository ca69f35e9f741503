# SPDX-License-Identifier: MIT
"""Link hygiene of liborphand.so.0: exports exactly the orphand_* functions its header declares,
under LIBORPHAND_0, needs only libc; and orphand.h is valid C99, C11 and C++."""

import os
import re
import shutil
import subprocess
import tempfile

import orphtest as ot

LIB = os.environ["ORPHAND_LIB"]
SOURCE = os.environ["ORPHAND_SOURCE_DIR"]
HEADER = os.path.join(SOURCE, "include", "orphand", "orphand.h")


def tool(name):
    path = shutil.which(name)
    if not path:
        ot.skip(f"{name} is not installed")
    return path


def run(*argv):
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def declared():
    """The functions orphand.h declares."""
    with open(HEADER) as f:
        text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
    return set(re.findall(r"\b(orphand_\w+)\(", text))


def main():
    nm = run(tool("nm"), "-D", "--defined-only", LIB)
    symbols = [line.split()[-1] for line in nm.splitlines() if line.strip()]
    names = {s.split("@")[0] for s in symbols}
    want = declared()
    ot.check(names == want | {"LIBORPHAND_0"},
             f"exported {sorted(names)}, expected {sorted(want)} and the LIBORPHAND_0 node")
    unversioned = [s for s in symbols if s != "LIBORPHAND_0" and
                   not s.endswith("@@LIBORPHAND_0")]
    ot.check(not unversioned, f"symbols not under LIBORPHAND_0: {unversioned}")

    dyn = run(tool("readelf"), "-dW", LIB)
    needed = re.findall(r"\(NEEDED\).*\[(.*)\]", dyn)
    ot.check(needed == ["libc.so.6"], f"NEEDED {needed}, expected only libc.so.6")
    soname = re.findall(r"\(SONAME\).*\[(.*)\]", dyn)
    ot.check(soname == ["liborphand.so.0"], f"SONAME {soname}")
    ot.check("BIND_NOW" in dyn or "Flags: NOW" in dyn, "not linked with -z now")
    ot.check("GNU_RELRO" in run("readelf", "-lW", LIB), "not linked with -z relro")

    undefined = run("nm", "-D", "--undefined-only", LIB)
    refs = [line.split()[-1].split("@")[0] for line in undefined.splitlines() if line.strip()]
    bad = [n for n in refs if re.match(r"_Z|__cxa_(?!finalize)|__gxx_|_Unwind_", n)]
    ot.check(not bad, f"references C++ runtime symbols: {bad}")

    # The public header alone, as a user compiles it: C99 and C11 pedantic, and C++.
    with tempfile.TemporaryDirectory(prefix="orphand-header-") as tmp:
        src = os.path.join(tmp, "use.c")
        with open(src, "w") as f:
            f.write("#include <orphand/orphand.h>\n"
                    "int main(void) { return orphand_reason_text(ORPHAND_REASON_OK)[0] == 0 "
                    "&& sizeof(struct orphand_request) == 32; }\n")
        include = os.path.join(SOURCE, "include")
        for compiler, std in ((tool("cc"), "c99"), ("cc", "c11"), (tool("c++"), "c++11"),
                              ("c++", "c++20")):
            lang = ["-x", "c++"] if compiler == "c++" or compiler.endswith("c++") else []
            r = subprocess.run([compiler, *lang, f"-std={std}", "-pedantic-errors", "-Wall",
                                "-Wextra", "-Werror", "-fsyntax-only", "-I", include, src],
                               capture_output=True, text=True)
            ot.check(r.returncode == 0, f"orphand.h does not compile as {std}:\n{r.stderr}")
    print(f"{len(want)} functions exported under LIBORPHAND_0, NEEDED libc.so.6 only; "
          "orphand.h compiles as C99, C11, C++11 and C++20")


if __name__ == "__main__":
    ot.run(main)
