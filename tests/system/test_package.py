# SPDX-License-Identifier: MIT
"""The Debian package: built by dpkg-buildpackage from a copy of the source tree, checked by
lintian, then installed, upgraded and purged under a real systemd, in this machine's root booted
in systemd-nspawn with /usr, /etc and /var as overlays whose writable layers are in a tmpfs (so
nothing is installed on the host).

With --version-only it checks just that debian/changelog's version is meson's project version.
"""

import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from nspawn import (Container, bindings, journal, listeners, main_pid, report_failure, show,
                    spawn)
from orphtest import check, fail, skip

SOURCE = os.environ["ORPHAND_SOURCE_DIR"]
sys.path.insert(0, os.path.join(SOURCE, "tests", "lib"))
from test_example import example_source  # noqa: E402 - orphand(3)'s example, as tests/lib takes it

VERSION = os.environ["ORPHAND_VERSION"]
DEBS_IN = "/opt/orphand-debs"  # the built packages, read-only inside the container
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
SOCKET = "/run/orphand/orphand.sock"
LIBRARY_PACKAGES = ("liborphand0", "liborphand-dev")
PYTHON_PACKAGE = "python3-orphand"

# Run by the system's python3 in the container: binds a `sleep` to a parent with the installed
# module's bind_popen(), SIGKILLs the parent, and says whether the child died with it.
PYTHON_CHECK = r"""
import os, select, signal, subprocess, sys
import orphand
r, w = os.pipe()
parent = os.fork()
if parent == 0:
    os.close(r)
    child = subprocess.Popen(["sleep", "1000"])
    orphand.bind_popen(child)
    os.write(w, f"{child.pid}\n".encode())
    signal.pause()
os.close(w)
child = int(os.read(r, 64))
cfd = os.pidfd_open(child)
os.kill(parent, signal.SIGKILL)
os.waitpid(parent, 0)
dead = bool(select.select([cfd], [], [], 10)[0])
if not dead:
    signal.pidfd_send_signal(cfd, signal.SIGKILL)
print(orphand.__file__, "killed" if dead else "alive")
"""
BUILD_TIMEOUT = 1200
APT_TIMEOUT = 300
# Where the container looks for anything of orphand's left behind (/usr/local is hidden).
LEFTOVER_ROOTS = ["/etc", "/var", "/run", "/usr", "/lib"]

timings = {}


def changelog_version():
    with open(os.path.join(SOURCE, "debian", "changelog")) as f:
        m = re.match(r"orphand \(([^)\s]+)\) ", f.readline())
    check(m, "debian/changelog does not start with an orphand entry")
    return m.group(1)


def check_version():
    """debian/changelog's newest entry is meson's project version (a Debian revision aside)."""
    version = changelog_version()
    upstream = version.rsplit("-", 1)[0] if "-" in version else version
    check(upstream == VERSION, f"debian/changelog's version {version} is not meson's project "
          f"version {VERSION}: add a debian/changelog entry for this release (dch -v {VERSION})")
    print(f"debian/changelog: {version}, meson project version {VERSION}")


def message_ids():
    with open(os.path.join(SOURCE, "daemon", "log.hpp")) as f:
        ids = re.findall(r'"([0-9a-f]{32})"', f.read())
    check(ids, "no MESSAGE_IDs in daemon/log.hpp")
    return ids


def readme_dropin():
    """The shim drop-in line the README tells a service to use."""
    with open(os.path.join(SOURCE, "README.md")) as f:
        m = re.search(r"^\s*(Environment=LD_PRELOAD=(\S+))\s*$", f.read(), re.M)
    check(m, "README.md has no Environment=LD_PRELOAD= drop-in line")
    return m.group(1), m.group(2)


def copy_source(dest):
    """The checkout's files (tracked, and untracked but not ignored): no build directories."""
    r = subprocess.run(["git", "-C", SOURCE, "ls-files", "-z", "--cached", "--others",
                        "--exclude-standard"], capture_output=True)
    if r.returncode != 0:  # not a git checkout: everything but build trees
        shutil.copytree(SOURCE, dest, symlinks=True, ignore=shutil.ignore_patterns(
            ".git", "build", "build-*", ".cache", "obj-*"))
        return
    for rel in sorted(set(r.stdout.decode().split("\0")) - {""}):
        src = os.path.join(SOURCE, rel)
        if not os.path.lexists(src):  # deleted in the work tree
            continue
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel), follow_symlinks=False)


def build_package(work):
    """dpkg-buildpackage -us -uc -b in a copy of the tree; the .deb and .changes it made."""
    src = os.path.join(work, "src")
    copy_source(src)
    env = dict(os.environ)
    for var in ("ORPHAND_BUILD_DIR", "ORPHAND_SOURCE_DIR", "ORPHAND_VERSION", "PYTHONPATH",
                "MESON_TESTTHREADS", "MALLOC_PERTURB_", "LD_LIBRARY_PATH"):
        env.pop(var, None)  # the package's own test run must not see this run's settings
    opts = env.get("DEB_BUILD_OPTIONS", "").split()
    if not any(o.startswith("parallel=") for o in opts):
        opts.append(f"parallel={os.cpu_count() or 1}")
    env["DEB_BUILD_OPTIONS"] = " ".join(opts)
    log_path = os.path.join(work, "dpkg-buildpackage.log")
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        r = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env,
                           stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                           timeout=BUILD_TIMEOUT)
    timings["dpkg-buildpackage"] = time.monotonic() - t0
    if r.returncode != 0:
        with open(log_path, "rb") as f:
            fail(f"dpkg-buildpackage failed ({r.returncode}):\n"
                 f"{f.read()[-4000:].decode(errors='replace')}")
    arch = subprocess.run(["dpkg-architecture", "-qDEB_HOST_ARCH"], capture_output=True,
                          text=True, check=True).stdout.strip()
    version = changelog_version()
    deb = os.path.join(work, f"orphand_{version}_{arch}.deb")
    changes = os.path.join(work, f"orphand_{version}_{arch}.changes")
    libs = [os.path.join(work, f"{p}_{version}_{arch}.deb") for p in LIBRARY_PACKAGES]
    libs.append(os.path.join(work, f"{PYTHON_PACKAGE}_{version}_all.deb"))
    check(all(os.path.exists(f) for f in [deb, changes, *libs]),
          f"no {os.path.basename(deb)}, library packages and .changes: "
          f"{sorted(os.listdir(work))}")
    print(f"dpkg-buildpackage -us -uc -b: {os.path.basename(deb)} in "
          f"{timings['dpkg-buildpackage']:.0f} s (DEB_BUILD_OPTIONS={env['DEB_BUILD_OPTIONS']})")
    return deb, libs, changes


def run_lintian(changes):
    t0 = time.monotonic()
    r = subprocess.run(["lintian", "--display-info", changes], capture_output=True, text=True)
    timings["lintian"] = time.monotonic() - t0
    out = r.stdout + r.stderr
    tags = [line for line in out.splitlines() if re.match(r"[EW]: ", line)]
    check(not tags and r.returncode == 0,
          f"lintian reports errors or warnings (exit {r.returncode}):\n{out}")
    infos = [line for line in out.splitlines() if re.match(r"[IPX]: ", line)]
    print(f"lintian: no errors or warnings ({len(infos)} informational: {infos})")


def bumped_package(deb, work):
    """The same package with a higher version, as a release after this one would be."""
    tree = os.path.join(work, "repack")
    subprocess.run(["dpkg-deb", "-R", deb, tree], check=True)
    control = os.path.join(tree, "DEBIAN", "control")
    with open(control) as f:
        text = f.read()
    old = re.search(r"^Version: (\S+)$", text, re.M).group(1)
    new = f"{old}+upgradetest1"
    with open(control, "w") as f:
        f.write(text.replace(f"Version: {old}\n", f"Version: {new}\n"))
    out = os.path.join(os.path.dirname(deb), os.path.basename(deb).replace(old, new))
    subprocess.run(["dpkg-deb", "--build", tree, out], check=True, capture_output=True)
    shutil.rmtree(tree)
    return out, new


# --- in the container -----------------------------------------------------------------------

def apt(c, *args):
    t0 = time.monotonic()
    r = c.run("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-y", "-q",
              "--no-install-recommends", *args, timeout=APT_TIMEOUT)
    return r, time.monotonic() - t0


def leftovers(c):
    """Every path named *orphand* under LEFTOVER_ROOTS in the container."""
    r = c.run("find", *LEFTOVER_ROOTS, "-xdev", "-name", "*orphand*", check=False)
    return set(r.stdout.split())


def orphand_processes(c):
    """Container pids whose command is orphand."""
    root = f"/proc/{c.init}/root/proc"
    pids = []
    for entry in os.listdir(root):
        try:
            with open(f"{root}/{entry}/comm") as f:
                if f.read().strip() == "orphand":
                    pids.append(int(entry))
        except (OSError, ValueError):
            pass
    return pids


def unit_files(c):
    """The orphand* unit files systemd knows of (list-unit-files fails when there is none)."""
    r = c.run("systemctl", "list-unit-files", "--no-legend", "orphand*", check=False)
    return r.stdout.split()


def exists(c, path):
    return os.path.lexists(f"/proc/{c.init}/root{path}")


def package_paths(deb):
    """The paths a .deb installs, directories included, as dpkg -L names them."""
    out = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], capture_output=True, check=True)
    names = subprocess.run(["tar", "-t"], input=out.stdout, capture_output=True,
                           check=True).stdout.decode().split("\n")
    return {os.path.normpath("/" + n) for n in names if n}


def step_clean_slate(c, debs):
    """Nothing of orphand's is visible before the install: not the host's, not a meson one.
    Returns the package's paths that exist already, and the paths named after orphand."""
    for pkg in ("orphand", *LIBRARY_PACKAGES, PYTHON_PACKAGE):
        r = c.run("dpkg-query", "-W", "-f=${Status}", pkg, check=False)
        if "installed" in r.stdout.split():
            # The host has the package: remove it in the container only (the overlay's upper
            # layer).
            print(f"the host has {pkg} installed: purged inside the container first")
            apt(c, "purge", pkg)
    if exists(c, "/usr/sbin/policy-rc.d"):
        # A container image's "start no service" policy (exit 101), which a real system lacks.
        c.run("rm", "/usr/sbin/policy-rc.d")
        print("removed the host's /usr/sbin/policy-rc.d inside the container")
    units = unit_files(c)
    check(not units, f"orphand units are visible before the install: {units}")
    r = c.run("sh", "-c", "command -v orphand orphanctl", check=False)
    check(r.stdout.strip() == "", f"orphand binaries are visible before the install: {r.stdout}")
    return {p for deb in debs for p in package_paths(deb) if exists(c, p)}, leftovers(c)


def step_install(c, deb, runtime):
    # orphanctl links liborphand: the two go in together, as apt would take both from an archive.
    _, took = apt(c, "install", f"{DEBS_IN}/{os.path.basename(deb)}",
                  f"{DEBS_IN}/{os.path.basename(runtime)}")
    timings["apt-get install"] = took
    files = [os.path.normpath(f) for f in c.run("dpkg", "-L", "orphand").stdout.split()]
    multiarch = c.run("dpkg-architecture", "-qDEB_HOST_MULTIARCH", check=False).stdout.strip()
    shim = f"/usr/lib/{multiarch or 'x86_64-linux-gnu'}/orphand/orphand-forkwait.so"
    for path in ("/usr/sbin/orphand", "/usr/bin/orphanctl", shim,
                 "/lib/systemd/system/orphand.socket", "/lib/systemd/system/orphand.service",
                 "/usr/lib/systemd/user/orphand.socket", "/usr/lib/systemd/user/orphand.service",
                 "/usr/lib/systemd/catalog/orphand.catalog",
                 "/usr/share/man/man8/orphand.8.gz", "/usr/share/man/man1/orphanctl.1.gz",
                 "/usr/share/doc/orphand/copyright"):
        check(path in files and exists(c, path), f"the package does not install {path}")

    # Enabled and listening with no further step; the service waits for its first client.
    check(c.run("systemctl", "is-enabled", "orphand.socket").stdout.strip() == "enabled",
          "orphand.socket is not enabled")
    check(c.run("systemctl", "is-active", "orphand.socket").stdout.strip() == "active",
          "orphand.socket is not active")
    check(listeners(c, SOCKET), f"nothing listens on {SOCKET}")
    state = c.run("systemctl", "is-active", "orphand.service", check=False).stdout.strip()
    check(state == "inactive", f"orphand.service started before any client: {state}")
    # The per-user units are opt-in: not enabled for every user.
    check(not exists(c, "/etc/systemd/user/sockets.target.wants/orphand.socket"),
          "the package enabled the user socket for every user")
    print(f"install: {c.run('orphanctl', 'ping').stdout.strip()}; socket enabled and "
          f"listening, service started by the first client "
          f"({show(c, 'orphand.service', 'ActiveState')})")

    # The catalog trigger (systemd's interest in /usr/lib/systemd/catalog) ran.
    catalog = c.run("journalctl", "--list-catalog").stdout
    missing = [i for i in message_ids() if i not in catalog]
    check(not missing, f"MESSAGE_IDs not in the journal catalog after the install: {missing}")

    # orphanctl run finds the installed shim (ORPHAND_SHIM_PATH is the packaged path).
    c.run("orphanctl", "run", "--", "bash", "-c",
          "sleep 1000 & echo $! > /run/orphtest-run.pid; kill -KILL $$", check=False)
    child = int(open(f"/proc/{c.init}/root/run/orphtest-run.pid").read())
    took = c.wait_dead([child])
    print(f"install: {len(files)} paths, catalog has all {len(message_ids())} MESSAGE_IDs, "
          f"orphanctl run's child dead {took * 1000:.0f} ms after its parent")
    return files, shim


def step_library(c, libs):
    """liborphand0 and liborphand-dev: orphand(3)'s example, taken from the installed page,
    builds with pkg-config alone, and the child it binds dies with it; python3-orphand: the
    system's python3 imports the module and its bound child dies too. The packages' paths."""
    _, took = apt(c, "install", *(f"{DEBS_IN}/{os.path.basename(f)}" for f in libs))
    timings["apt-get install (library)"] = took
    files = [os.path.normpath(f) for pkg in (*LIBRARY_PACKAGES, PYTHON_PACKAGE)
             for f in c.run("dpkg", "-L", pkg).stdout.split()]
    out = c.run("/usr/bin/python3", "-c", PYTHON_CHECK).stdout.split()
    check(out[-1:] == ["killed"] and out[0].startswith("/usr/lib/python3/dist-packages/"),
          f"python3-orphand: {out}")
    print(f"python3-orphand: the system's python3 imports {out[0]}; the child it bound died "
          f"with its parent")
    with gzip.open(f"/proc/{c.init}/root/usr/share/man/man3/orphand.3.gz", "rt") as f:
        source = example_source(f.read())
    with open(f"/proc/{c.init}/root/run/orphtest-example.c", "w") as f:
        f.write(source)
    c.sh("cc -Wall -Werror -o /run/orphtest-example /run/orphtest-example.c "
         "$(pkg-config --cflags --libs orphand)")
    # KillMode=process: systemd leaves the child alone when the example dies; only orphand
    # can kill it.
    example = spawn(c, "orphtest-example", ["/run/orphtest-example"],
                    props=["KillMode=process"])
    c.wait_until(lambda: any(p == example for p, _ in bindings(c)), "the example's binding")
    child = next(ch for p, ch in bindings(c) if p == example)
    t0 = time.monotonic()
    c.run("kill", "-KILL", str(example))
    took = c.wait_dead([child], since=t0)
    c.run("rm", "/run/orphtest-example", "/run/orphtest-example.c")
    print(f"library: orphand(3)'s example built with pkg-config in the container; its child "
          f"dead {took * 1000:.0f} ms after it was SIGKILLed")
    return files


def step_shim_service(c, shim):
    """A service with the README's drop-in: its children die with its main process."""
    line, path = readme_dropin()
    check(path == shim, f"the README's drop-in preloads {path}, the package ships {shim}")
    c.sh("cat > /etc/orphtest-app.sh", input=(
        "sleep 1000 & sleep 1000 & echo $$ $(jobs -p) > /run/orphtest-app.pids; wait\n"))
    # KillMode=process: systemd leaves the children alone when the main process dies, so that
    # only orphand can kill them.
    c.sh("mkdir -p /etc/systemd/system/orphtest-app.service.d && "
         "cat > /etc/systemd/system/orphtest-app.service", input=(
             "[Service]\nExecStart=/bin/bash /etc/orphtest-app.sh\nKillMode=process\n"))
    c.sh("cat > /etc/systemd/system/orphtest-app.service.d/orphand.conf && "
         "systemctl daemon-reload", input=f"[Service]\n{line}\n")
    c.run("systemctl", "start", "orphtest-app.service")
    pids_file = f"/proc/{c.init}/root/run/orphtest-app.pids"
    c.wait_until(lambda: os.path.exists(pids_file) and
                 len(open(pids_file).read().split()) == 3, "the service's pid file")
    main, *children = (int(x) for x in open(pids_file).read().split())
    check(main == int(show(c, "orphtest-app.service", "MainPID")), "unexpected main pid")
    c.wait_until(lambda: {(main, ch) for ch in children} <= bindings(c),
                 "the shim's bindings of the service's children")
    t0 = time.monotonic()
    c.run("systemctl", "kill", "--signal=KILL", "--kill-who=main", "orphtest-app.service")
    took = c.wait_dead(children, since=t0)
    c.wait_until(lambda: sorted(int(e["ORPHAND_CHILD_PID"]) for e in journal(c)
                                if e.get("ORPHAND_PARENT_PID") == str(main) and
                                "ORPHAND_CHILD_PID" in e) == sorted(children),
                 "orphand's kill entries for the service's children")
    c.run("systemctl", "stop", "orphtest-app.service", check=False)
    # The unit and drop-in are the admin's files, not the package's: gone before the purge.
    c.sh("cd /etc/systemd/system && rm -r orphtest-app.service orphtest-app.service.d && "
         "systemctl daemon-reload")
    timings["shim service: children dead after SIGKILL"] = took
    print(f"shim drop-in ({line}): both children of the SIGKILLed main process dead "
          f"{took * 1000:.0f} ms later, killed by orphand")


def step_upgrade(c, deb, version):
    """An upgrade restarts the service, keeps the socket listening and keeps every binding."""
    parent = spawn(c, "orphtest-parent", ["sleep", "1000"])
    child = spawn(c, "orphtest-child", ["sleep", "1000"])
    c.run("orphanctl", "register", str(parent), str(child))
    old_pid = main_pid(c)
    old_listeners = listeners(c, SOCKET)
    _, took = apt(c, "install", f"{DEBS_IN}/{os.path.basename(deb)}")
    timings["apt-get install (upgrade)"] = took
    installed = c.run("dpkg-query", "-W", "-f=${Version}", "orphand").stdout.strip()
    check(installed == version, f"version {installed} installed, not {version}")
    new_pid = main_pid(c)
    check(new_pid not in (0, old_pid), f"the upgrade did not restart orphand ({old_pid} -> "
          f"{new_pid})")
    check(show(c, "orphand.service", "ActiveState") == "active", "orphand is not active")
    check(listeners(c, SOCKET) == old_listeners,
          f"the upgrade replaced the listening socket: {old_listeners} -> "
          f"{listeners(c, SOCKET)}")
    check((parent, child) in bindings(c), "the binding did not survive the upgrade")
    t0 = time.monotonic()
    c.run("kill", "-KILL", str(parent))
    dead = c.wait_dead([child], since=t0)
    timings["upgrade: child dead after its parent's SIGKILL"] = dead
    print(f"upgrade to {version} in {took:.1f} s: orphand restarted (pid {old_pid} -> "
          f"{new_pid}), socket kept listening (inode {old_listeners}), the binding made before "
          f"it killed its child {dead * 1000:.0f} ms after the parent's SIGKILL")


def step_purge(c, files, existing, named):
    pid = main_pid(c)
    _, took = apt(c, "purge", "orphand", *LIBRARY_PACKAGES, PYTHON_PACKAGE)
    timings["apt-get purge"] = took
    status = c.run("dpkg-query", "-W", "-f=${Status}", "orphand", check=False).stdout
    check("installed" not in status.split() and "config-files" not in status.split(),
          f"orphand is still known to dpkg: {status!r}")
    for pkg in (*LIBRARY_PACKAGES, PYTHON_PACKAGE):
        status = c.run("dpkg-query", "-W", "-f=${Status}", pkg, check=False).stdout
        check("installed" not in status.split(), f"{pkg} is still installed: {status!r}")
    check(not c.alive(pid), f"orphand (pid {pid}) outlived the purge")
    check(not orphand_processes(c), f"orphand processes left: {orphand_processes(c)}")
    check(not unit_files(c), f"orphand units are still known to systemd: {unit_files(c)}")
    state = c.run("systemctl", "is-active", "orphand.socket", check=False).stdout.strip()
    check(state == "inactive", f"orphand.socket is {state} after the purge")
    check(not listeners(c, SOCKET) and not exists(c, SOCKET), f"{SOCKET} is still there")
    check(not exists(c, "/run/orphand"), "/run/orphand is still there")
    left = [f for f in files if f not in existing and exists(c, f)]
    check(not left, f"the purge left files of the package: {left}")
    new = sorted(leftovers(c) - named)
    check(not new, f"the purge left paths named after orphand: {new}")
    catalog = c.run("journalctl", "--list-catalog").stdout
    stale = [i for i in message_ids() if i in catalog]
    check(not stale, f"MESSAGE_IDs still in the journal catalog after the purge: {stale}")
    print(f"purge in {took:.1f} s: no process, unit, socket, /run/orphand, catalog entry or any "
          f"of the {len(set(files) - existing)} paths the package created left")


def main():
    try:
        check_version()
    except AssertionError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    if sys.argv[1:] == ["--version-only"]:
        print("PASS")
        return 0
    if os.geteuid() != 0:
        skip("needs root to boot a container and install a package in it")
    for tool in ("dpkg-buildpackage", "dh", "lintian", "systemd-nspawn", "nsenter"):
        if not shutil.which(tool):
            skip(f"{tool} is not installed (.ci/build installs it)")
    if not os.path.isdir("/sys/fs/cgroup"):
        skip("no cgroup file system")
    work = tempfile.mkdtemp(prefix="orphand-package-")
    upper = None
    container = None
    try:
        debs = os.path.join(work, "debs")
        os.mkdir(debs)
        deb, libs, changes = build_package(debs)
        run_lintian(changes)
        print(subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True).stdout)
        upgrade, upgrade_version = bumped_package(deb, work)
        # The host's /usr, /etc and /var (its dpkg database), each the read-only lower layer of
        # an overlay whose upper layer is in /dev/shm: dpkg writes to a tmpfs only. /usr/local
        # is hidden, so that a meson install on the host is not seen. Booted to basic.target:
        # none of the host's enabled services runs in the container.
        upper = tempfile.mkdtemp(prefix="orphand-package-", dir="/dev/shm")
        overlays = []
        for d in ("usr", "etc", "var"):
            os.mkdir(os.path.join(upper, d))
            overlays.append(f"--overlay=/{d}:{upper}/{d}:/{d}")
        container = Container(work, PATH, nspawn_args=[
            *overlays, "--tmpfs=/usr/local", f"--bind-ro={debs}:{DEBS_IN}"],
            init_args=["systemd.unit=basic.target"])
        container.start()
        timings["boot"] = container.boot_seconds
        existing, named = step_clean_slate(container, [deb, *libs])
        files, shim = step_install(container, deb, libs[0])
        files += step_library(container, libs)
        step_shim_service(container, shim)
        step_upgrade(container, upgrade, upgrade_version)
        step_purge(container, files, existing, named)
        print("timings: " + "; ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    except Exception as e:  # noqa: BLE001 - any failure: report it with orphand's journal
        report_failure(e, container, units=("orphand", "orphand.socket"))
        return 1
    finally:
        if container:
            container.stop()
        shutil.rmtree(work, ignore_errors=True)
        if upper:
            shutil.rmtree(upper, ignore_errors=True)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
