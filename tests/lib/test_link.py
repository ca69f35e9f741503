# SPDX-License-Identifier: MIT
"""Link hygiene of liborphand.so.0: exports exactly the orphand_* functions its header declares,
each under the version node liborphand.map gives it (LIBORPHAND_0.3 inheriting LIBORPHAND_0.2,
which inherits LIBORPHAND_0), as
debian/liborphand0.symbols lists them; needs only libc; and orphand.h is valid C99, C11 and
C++."""

import os
import re
import shutil
import subprocess
import tempfile

import orphtest as ot

LIB = os.environ["ORPHAND_LIB"]
SOURCE = os.environ["ORPHAND_SOURCE_DIR"]
HEADER = os.path.join(SOURCE, "include", "orphand", "orphand.h")
MAP = os.path.join(SOURCE, "lib", "liborphand.map")
SYMBOLS = os.path.join(SOURCE, "debian", "liborphand0.symbols")


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


def version_script():
    """{function: node} and {node: parent} from liborphand.map, which names every function."""
    with open(MAP) as f:
        text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
    nodes, parents = {}, {}
    for node, body, parent in re.findall(r"(\w[\w.]*)\s*\{(.*?)\}\s*([\w.]*)\s*;", text, re.S):
        parents[node] = parent or None
        ot.check("*" not in body.split("local:")[0],
                 f"{node} exports by wildcard: a new function would land in an old node")
        for name in re.findall(r"\b(orphand_\w+)\s*;", body.split("local:")[0]):
            ot.check(name not in nodes, f"{name} is in two nodes")
            nodes[name] = node
    return nodes, parents


def debian_symbols():
    """{symbol@node} listed in debian/liborphand0.symbols."""
    with open(SYMBOLS) as f:
        return {line.split()[0] for line in f if line.startswith(" ")}


def main():
    nodes, parents = version_script()
    nm = run(tool("nm"), "-D", "--defined-only", LIB)
    symbols = [line.split()[-1] for line in nm.splitlines() if line.strip()]
    names = {s.split("@")[0] for s in symbols}
    want = declared()
    ot.check(set(nodes) == want, f"liborphand.map names {sorted(nodes)}, orphand.h declares "
             f"{sorted(want)}")
    ot.check(names == want | set(parents),
             f"exported {sorted(names)}, expected {sorted(want)} and the nodes {sorted(parents)}")
    misplaced = [s for s in symbols if s not in parents and
                 s != f"{s.split('@')[0]}@@{nodes.get(s.split('@')[0])}"]
    ot.check(not misplaced, f"symbols not under their node of liborphand.map: {misplaced}")
    ot.check(parents == {"LIBORPHAND_0": None, "LIBORPHAND_0.2": "LIBORPHAND_0",
                         "LIBORPHAND_0.3": "LIBORPHAND_0.2"}, f"version nodes {parents}")
    verdef = run(tool("readelf"), "-VW", LIB)
    for node, parent in parents.items():
        ot.check(not parent or re.search(rf"Name: {re.escape(node)}\s*\n\s*\S+\s+Parent 1: "
                                         rf"{re.escape(parent)}\s*\n", verdef),
                 f"{node} does not inherit {parent}:\n{verdef}")
    listed = debian_symbols()
    exported = {f"{s.split('@')[0]}@{nodes[s.split('@')[0]]}" for s in symbols
                if s not in parents} | {f"{n}@{n}" for n in parents}
    ot.check(listed == exported, "debian/liborphand0.symbols differs from the library: missing "
             f"{sorted(exported - listed)}, extra {sorted(listed - exported)}")

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
                    "&& sizeof(struct orphand_request) == 32 "
                    "&& sizeof(struct orphand_policy) == 16 && ORPHAND_POLICY_SCOPE "
                    "&& sizeof(struct orphand_binding_info2) == 80; }\n")
        include = os.path.join(SOURCE, "include")
        for compiler, std in ((tool("cc"), "c99"), ("cc", "c11"), (tool("c++"), "c++11"),
                              ("c++", "c++20")):
            lang = ["-x", "c++"] if compiler == "c++" or compiler.endswith("c++") else []
            r = subprocess.run([compiler, *lang, f"-std={std}", "-pedantic-errors", "-Wall",
                                "-Wextra", "-Werror", "-fsyntax-only", "-I", include, src],
                               capture_output=True, text=True)
            ot.check(r.returncode == 0, f"orphand.h does not compile as {std}:\n{r.stderr}")
    print(f"{len(want)} functions exported under {', '.join(sorted(parents))} as liborphand.map "
          "and debian/liborphand0.symbols say, NEEDED libc.so.6 only; orphand.h compiles as C99, "
          "C11, C++11 and C++20")


if __name__ == "__main__":
    ot.run(main)
