"""A local package index for tests: PEP 503 "simple" pages (and PEP 691 JSON when asked) for a
few projects, and their files with HTTP Range support, on 127.0.0.1 in a thread.

    idx = PackageIndex({"tiny-test-part1": [make_wheel("tiny-test-part1", "1.0.0", data)]})
    with idx:
        ... WHALE_INDEX_URL=idx.url ...   # http://127.0.0.1:PORT/simple
    idx.requests                          # every request: path, Range, Accept, status, bytes sent

Faults a test can ask for: drop_after(file, n) (once: the full Content-Length in the headers,
n bytes of body, then the socket closed), slow(file, delay, chunk) (a pause between chunks, so
a client can be killed mid-download), corrupt(file) (served bytes differ from the listed
sha256), fail(file, status, times) (an HTTP error, e.g. 503, the next `times` requests).

make_wheel(project, version, data) builds a wheel holding data as its one */data/*.bin member.
"""
import base64
import hashlib
import http.server
import io
import json
import re
import socket
import threading
import time
import zipfile

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def normalize(name):
    """PEP 503 project name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def make_wheel(project, version, data, compression=zipfile.ZIP_DEFLATED):
    """A wheel (filename, bytes) for project==version: <dist>/__init__.py, <dist>/data/partNN.bin
    (data; NN from the project's trailing number), and a minimal dist-info (METADATA, WHEEL,
    RECORD). Deterministic: the same arguments give the same bytes."""
    dist = re.sub(r"[-_.]+", "_", project)
    m = re.search(r"(\d+)$", project)
    part = int(m.group(1)) if m else 1
    info = f"{dist}-{version}.dist-info"
    members = [
        (f"{dist}/__init__.py", b""),
        (f"{dist}/data/part{part:02d}.bin", bytes(data)),
        (f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n".encode()),
        (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: whale-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
    ]
    record = []
    for name, body in members:
        digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(body)}")
    record.append(f"{info}/RECORD,,")
    members.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, body in members:
            zi = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            zi.compress_type = compression if name.endswith(".bin") else zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            z.writestr(zi, body)
    return f"{dist}-{version}-py3-none-any.whl", buf.getvalue()


class PackageIndex:
    """projects: {project name: [(filename, bytes), ...]}. json_api: answer a page request whose
    Accept asks for PEP 691 JSON with JSON (otherwise, and by default, HTML)."""

    def __init__(self, projects=None, json_api=False):
        self.json_api = json_api
        self.projects = {}  # normalized name -> [filename]
        self.files = {}  # filename -> bytes (as listed: the sha256 is of these)
        self.requests = []
        self._lock = threading.Lock()
        self._drop = {}  # filename -> bytes of body before the connection is closed (once)
        self._slow = {}  # filename -> (delay s, chunk bytes)
        self._corrupt = set()
        self._fail = {}  # filename -> [status, times left]
        self.ignore_range = False  # True: answer every GET with the whole file (200), as servers without Range do
        self._server = None
        self._thread = None
        for project, files in (projects or {}).items():
            for filename, data in files:
                self.add(project, filename, data)

    # -- setup -------------------------------------------------------------------------------
    def add(self, project, filename, data):
        self.projects.setdefault(normalize(project), []).append(filename)
        self.files[filename] = bytes(data)

    def drop_after(self, filename, n):
        """The next GET of filename sends its headers (full Content-Length), n bytes, then
        closes the connection. Once."""
        with self._lock:
            self._drop[filename] = n

    def slow(self, filename, delay=0.05, chunk=8192):
        """Serve filename chunk bytes at a time with delay seconds between chunks (delay 0 or
        None: full speed again)."""
        with self._lock:
            if delay:
                self._slow[filename] = (delay, chunk)
            else:
                self._slow.pop(filename, None)

    def corrupt(self, filename, on=True):
        """Serve filename with one byte changed in the middle; the pages keep the true sha256."""
        with self._lock:
            (self._corrupt.add if on else self._corrupt.discard)(filename)

    def fail(self, filename, status=503, times=1):
        """Answer the next `times` GETs of filename with `status` and a short body."""
        with self._lock:
            self._fail[filename] = [status, times]

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self):
        index = self

        class Handler(_Handler):
            pass

        Handler.index = index
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def url(self):
        """The index's base URL, for WHALE_INDEX_URL."""
        return f"http://127.0.0.1:{self.port}/simple"

    # -- what happened -----------------------------------------------------------------------
    def file_requests(self, filename):
        """The records of the requests for filename, in order."""
        with self._lock:
            return [r for r in self.requests if r["file"] == filename]

    def page_requests(self):
        with self._lock:
            return [r for r in self.requests if r["project"] is not None]

    def bytes_served(self, filename=None):
        """Body bytes written for files (all, or one), faults and partial sends included."""
        with self._lock:
            return sum(r["sent"] for r in self.requests if r["file"] and (filename is None or r["file"] == filename))

    def _record(self, **kw):
        with self._lock:
            self.requests.append(kw)
            return kw

    def _page(self, project, as_json):
        files = self.projects[project]
        if as_json:
            base = f"http://127.0.0.1:{self.port}/files/"
            doc = {"meta": {"api-version": "1.0"}, "name": project, "files": [
                {"filename": f, "url": base + f, "hashes": {"sha256": hashlib.sha256(self.files[f]).hexdigest()},
                 "size": len(self.files[f])} for f in files]}
            return JSON_TYPE, json.dumps(doc).encode()
        links = "\n".join(
            f'    <a href="../../files/{f}#sha256={hashlib.sha256(self.files[f]).hexdigest()}">{f}</a><br/>'
            for f in files)
        html = (f"<!DOCTYPE html>\n<html>\n  <head><meta name=\"pypi:repository-version\" content=\"1.0\">"
                f"<title>Links for {project}</title></head>\n  <body>\n    <h1>Links for {project}</h1>\n"
                f"{links}\n  </body>\n</html>\n")
        return "text/html", html.encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    index = None  # set on the subclass PackageIndex.start makes

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _simple(self, status, body, ctype="text/plain", head=False):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _serve(self, head):
        idx = self.index
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        rec = idx._record(method=self.command, path=self.path, range=self.headers.get("Range"),
                          accept=self.headers.get("Accept"), project=None, file=None, status=None, sent=0,
                          content_type=None, time=time.monotonic())
        m = re.fullmatch(r"/simple/([^/]+)/?", path)
        if m:
            project = m.group(1)
            rec["project"] = project
            if project not in idx.projects:
                rec["status"] = 404
                return self._simple(404, b"no such project\n", head=head)
            as_json = idx.json_api and JSON_TYPE in (self.headers.get("Accept") or "")
            ctype, body = idx._page(project, as_json)
            rec["status"], rec["content_type"] = 200, ctype
            return self._simple(200, body, ctype, head=head)
        m = re.fullmatch(r"/files/([^/]+)", path)
        if not m or m.group(1) not in idx.files:
            rec["status"] = 404
            return self._simple(404, b"not found\n", head=head)
        name = m.group(1)
        rec["file"] = name
        with idx._lock:
            data = idx.files[name]
            if name in idx._corrupt:
                b = bytearray(data)
                b[len(b) // 2] ^= 0xFF
                data = bytes(b)
            fail = idx._fail.get(name)
            if fail and not head:
                fail[1] -= 1
                if fail[1] <= 0:
                    del idx._fail[name]
            drop = None if head else idx._drop.pop(name, None)
            slow = idx._slow.get(name)
        if fail and not head:
            rec["status"] = fail[0]
            return self._simple(fail[0], b"server error\n", head=head)
        total, start, end = len(data), 0, len(data) - 1
        rng = None if idx.ignore_range else self.headers.get("Range")
        status = 200
        if rng:
            r = re.fullmatch(r"\s*bytes\s*=\s*(\d+)\s*-\s*(\d*)\s*", rng)
            if not r or int(r.group(1)) >= total:
                rec["status"] = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{total}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(r.group(1))
            if r.group(2):
                end = min(int(r.group(2)), total - 1)
            status = 206
        body = data[start:end + 1]
        rec["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
        self.end_headers()
        if head:
            return
        limit = len(body) if drop is None else min(drop, len(body))
        step = slow[1] if slow else 65536
        try:
            pos = 0
            while pos < limit:
                n = min(step, limit - pos)
                self.wfile.write(body[pos:pos + n])
                self.wfile.flush()
                pos += n
                with idx._lock:
                    rec["sent"] = pos
                if slow and pos < limit:
                    time.sleep(slow[0])
            if drop is not None:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
