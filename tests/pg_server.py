"""A private PostgreSQL server for the tests, from Debian's packages: initdb into a temporary
directory, listening only on a Unix socket there (and a loopback port), trust authentication,
torn down by stop(). Run as root (as CI does), the server runs as the `postgres` user the
package creates, since PostgreSQL refuses to run as root."""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time


def bin_dir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(found[-1]) if found else None


class Server:
    def __init__(self):
        self.bin = bin_dir()
        if not self.bin:
            raise RuntimeError("PostgreSQL is not installed (scripts/setup installs it)")
        self.dir = tempfile.mkdtemp(prefix="whale-pg-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.as_user = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        data = os.path.join(self.dir, "data")
        self.run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        self.run("pg_ctl", "-D", data, "-s", "-w", "-l", os.path.join(self.dir, "log"), "-o",
                 f"-k {self.dir} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        self.data = data
        self.n = 0

    def run(self, tool, *args):
        subprocess.run([*self.as_user, os.path.join(self.bin, tool), *args], check=True, capture_output=True)

    def new_database(self):
        """A fresh empty database: its URL."""
        self.n += 1
        name = f"whale{self.n}"
        self.run("createdb", "-h", self.dir, "-p", str(self.port), "-U", "postgres", name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self):
        try:
            self.run("pg_ctl", "-D", self.data, "-s", "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
