"""A local stand-in for the Hugging Face Hub's HTTP API, for testing a downloader with HF_ENDPOINT pointed at it.

It imitates what huggingface.co serves to a client that uses no HF library (docs/reference: model-hub.md §1):

* the **hub** (``FakeHub.endpoint``, ``http://127.0.0.1:PORT``): ``/api/models/{repo}[/revision/{rev}]`` (model info,
  ``?blobs=true``), ``/api/models/{repo}/tree/{rev}[/{path}]`` (cursor paging through ``Link: rel="next"``),
  ``/api/models/{repo}/refs``, ``/{repo}/resolve/{rev}/{path}`` (small git files answered directly, LFS files -- every
  ``.gguf`` -- with a 302 to a signed CDN URL carrying ``X-Repo-Commit``/``X-Linked-Etag``/``X-Linked-Size``) and
  ``/{repo}/raw/{rev}/{path}`` (LFS pointer text); the Hub's error codes (``X-Error-Code``: RepoNotFound,
  RevisionNotFound, EntryNotFound, GatedRepo) and its 429 ``RateLimit`` headers;
* a **CDN** on another port, addressed as ``http://localhost:CDNPORT`` (another host name, as cdn-lfs.hf.co is, so a
  client that keeps ``Authorization`` across hosts shows in the request log), serving ``/blobs/{sha256}`` with Range
  support and refusing unsigned or expired URLs like CloudFront does.

Both can serve HTTPS with a throwaway CA made by the ``openssl`` command line (``FakeHub.ca_file`` for SSL_CERT_FILE).
Faults can be injected at any time (``drop_after``, ``corrupt``, ``rate_limit``, ``throttle``, ``ignore_range``) and
every request is logged (``requests``, ``cdn_bytes_sent``, ``count``). Standard library only.

    with FakeHub({"user/smol": {"smol.Q4_1.gguf": "/path/to/file.gguf", "README.md": b"# hi\\n"}}) as hub:
        env = {"HF_ENDPOINT": hub.endpoint}
        ...
        assert hub.count("cdn", "/blobs/") == 1

``python3 fakehub.py --serve REPO_ID FILE [FILE ...] [--tls]`` runs one in the foreground and prints its endpoint.
"""
import argparse
import base64
import errno
import gzip
import hashlib
import hmac
import io
import json
import mimetypes
import os
import secrets
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

READ_CHUNK = 1 << 20        # unthrottled bodies: large reads keep Python's per-call overhead out of the throughput
PACE_CHUNK = 64 << 10       # throttled bodies: small writes so the pacing is smooth and a cancel lands quickly
SENDFILE_CHUNK = 8 << 20    # plain-HTTP fast path: the byte counter advances between sendfile calls
LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"
ISO_DATE = "2024-01-01T00:00:00.000Z"


# --------------------------------------------------------------------------------------------------------------------
# Content and digests

_digest_cache = {}
_digest_lock = threading.Lock()


def git_blob_oid(data):
    """Git's object id of a blob: SHA-1 over "blob <len>\\0" + content (what the Hub calls a small file's oid/ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256, size):
    """The Git LFS pointer file that the repo's git tree holds in place of an LFS file."""
    return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (sha256.encode(), size)


def _disk_digests(path, git_oid=True):
    """(size, sha256, git blob oid) of a file on disk, hashed once per (path, size, mtime) so repeated hubs over the
    same multi-GB file cost one pass, and a file rewritten in place is hashed again. An LFS file's git oid is its
    pointer's, so `git_oid=False` skips the SHA-1 of the content (None in its place): half the time on big files."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, git_oid)
    with _digest_lock:
        hit = _digest_cache.get(key)
    if hit:
        return hit
    sha = hashlib.sha256()
    git = hashlib.sha1(b"blob %d\0" % st.st_size) if git_oid else None
    with open(path, "rb") as f:
        while True:
            block = f.read(READ_CHUNK)
            if not block:
                break
            sha.update(block)
            if git:
                git.update(block)
    digests = (st.st_size, sha.hexdigest(), git.hexdigest() if git else None)
    with _digest_lock:
        _digest_cache[key] = digests
    return digests


class RepoFile:
    """One file of a repo snapshot: content held in memory (bytes) or read from disk (a path)."""

    def __init__(self, path, source, lfs):
        self.path = path
        self.lfs = lfs
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.data, self.disk_path = bytes(source), None
            self._digests = (len(self.data), hashlib.sha256(self.data).hexdigest(), git_blob_oid(self.data))
        else:
            self.data, self.disk_path = None, os.fspath(source)
            if not os.path.isfile(self.disk_path):
                raise FileNotFoundError(self.disk_path)

    def digests(self):
        return self._digests if self.data is not None else _disk_digests(self.disk_path, not self.lfs)

    @property
    def size(self):
        return self.digests()[0]

    @property
    def sha256(self):
        return self.digests()[1]

    @property
    def oid(self):
        """The git blob id the tree shows: the pointer's for an LFS file, the content's otherwise."""
        size, sha, git = self.digests()
        return git_blob_oid(lfs_pointer(sha, size)) if self.lfs else git

    @property
    def pointer_size(self):
        return len(lfs_pointer(self.sha256, self.size))

    def read_all(self):
        if self.data is not None:
            return self.data
        with open(self.disk_path, "rb") as f:
            return f.read()

    def open(self):
        """A binary file object (a BytesIO for in-memory content) for the body loop."""
        if self.data is not None:
            return io.BytesIO(self.data)
        return open(self.disk_path, "rb")


def _commit_id(repo_id, n):
    """A fixed, reproducible 40-hex commit per repo and update number."""
    return hashlib.sha1(b"fakehub commit %s %d" % (repo_id.encode(), n)).hexdigest()


def _is_lfs(repo_id, path, lfs_marks):
    return path.lower().endswith(".gguf") or path in lfs_marks or (repo_id, path) in lfs_marks


# --------------------------------------------------------------------------------------------------------------------
# TLS material

def _make_certificates(directory):
    """A throwaway CA and a leaf for 127.0.0.1/localhost signed by it, with the openssl CLI (EC keys: fast to make),
    or the ones an earlier call left in `directory`. Returns (ca_pem, leaf_pem, leaf_key)."""
    made = tuple(os.path.join(directory, n) for n in ("ca.pem", "leaf.pem", "leaf.key"))
    if all(os.path.exists(p) for p in made):
        return made
    os.makedirs(directory, exist_ok=True)

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "7",
            "-subj", "/CN=fakehub test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost")
    with open(os.path.join(directory, "leaf.ext"), "w") as f:
        # Strict verifiers (Python 3.13's VERIFY_X509_STRICT, Apple's) want the key identifiers and EKU spelled out.
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n"
                "subjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid,issuer\n")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial",
            str(secrets.randbits(63)), "-days", "7", "-extfile", "leaf.ext", "-out", "leaf.pem")
    return made


# --------------------------------------------------------------------------------------------------------------------
# Servers

class _Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer that does the TLS handshake in the connection's own thread (a slow client then cannot
    stall accept()), keeps track of open connections so stop() can cut idle keep-alive ones, and stays quiet about
    clients that hang up."""
    daemon_threads = True
    block_on_close = False

    def __init__(self, address, handler, hub, kind, ssl_context, family=socket.AF_INET):
        self.address_family = family
        self.hub, self.kind, self.ssl_context = hub, kind, ssl_context
        self.connections = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # HTTPServer.server_bind would also look up the host's FQDN, which can take seconds on a machine without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request, client_address):
        conn = request
        try:
            if self.ssl_context:
                request.settimeout(30)
                conn = self.ssl_context.wrap_socket(request, server_side=True)
            with self.connections_lock:
                self.connections.add(conn)
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            with self.connections_lock:
                self.connections.discard(conn)
            if conn is not request:
                conn.close()

    def cut_connections(self):
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (OSError, ssl.SSLError)):  # resets, broken pipes, failed handshakes
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """What both servers share: HTTP/1.1 keep-alive, the request log, replies with an exact Content-Length."""
    protocol_version = "HTTP/1.1"
    server_version = "fakehub/1"
    disable_nagle_algorithm = True   # headers and body go out as two writes; Nagle would delay the second by ~40 ms
    timeout = 120                    # an idle keep-alive connection is closed after this

    # -- plumbing ----------------------------------------------------------------------------------------------------

    @property
    def hub(self):
        return self.server.hub

    def version_string(self):
        return self.server_version

    def handle_one_request(self):
        self.record = None           # a malformed request answered by the base class has no record of its own
        super().handle_one_request()

    def __getattr__(self, name):
        # Every method other than GET and HEAD is answered 405 (the base class would say 501 for unknown ones).
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def _not_allowed(self):
        self._begin()
        self._drain_body()
        self.reply(405, b'{"error":"Method not allowed"}', "application/json; charset=utf-8", {"Allow": "GET, HEAD"})

    def _drain_body(self):
        """Reads an unexpected request body so the next request on the connection starts where it should."""
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if n < 0 or n > (1 << 20) or "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
        elif n:
            self.rfile.read(n)

    def _begin(self):
        split = urllib.parse.urlsplit(self.path)
        self.url_path = split.path
        self.query = {k: v[-1] for k, v in urllib.parse.parse_qs(split.query, keep_blank_values=True).items()}
        self.record = {"server": self.server.kind, "method": self.command, "path": split.path, "query": self.query,
                       "headers": {k.lower(): v for k, v in self.headers.items()}, "range": self.headers.get("Range"),
                       "status": None, "sent": 0, "time": time.time()}
        self.hub._log(self.record)

    def _dispatch(self):
        self._begin()
        try:
            self.route()
        except (OSError, ssl.SSLError):
            self.close_connection = True
            raise
        except Exception:
            # A bug in the fake: answer 500 if nothing was sent yet, and let the server print the traceback.
            self.close_connection = True
            if self.record["status"] is None:
                self.reply_json(500, {"error": "fakehub internal error"})
            raise

    def send_response(self, code, message=None):
        if self.record is not None:
            self.record["status"] = code
        super().send_response(code, message)

    def log_message(self, format, *args):
        if self.hub.verbose:
            sys.stderr.write("[fakehub %s] %s\n" % (self.server.kind, format % args))

    def reply(self, status, body=b"", content_type="text/plain; charset=utf-8", headers=None):
        """A whole response; HEAD gets the same headers (Content-Length included) and no body."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
            self.record["sent"] = len(body)

    def reply_json(self, status, obj, headers=None):
        self.reply(status, json.dumps(obj).encode(), "application/json; charset=utf-8", headers)

    def send_range(self, f, headers, honour_range=True, cdn_blob=None):
        """Serves RepoFile `f` whole (200) or the requested byte range (206); 416 past the end.
        On the CDN (`cdn_blob` = its sha256) the injected faults apply to the body."""
        size = f.size
        rng = parse_range(self.headers.get("Range"), size) if honour_range else None
        if rng == "unsatisfiable":
            self.reply(416, b"", headers={"Content-Range": "bytes */%d" % size, "Accept-Ranges": "bytes"})
            return
        start, end = rng if rng else (0, size)
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(end - start))
        if rng:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, size))
        self.send_header("Accept-Ranges", "bytes")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD" or start == end:
            return
        plan = self.hub._body_plan(cdn_blob, start, end, size) if cdn_blob else _BodyPlan(None, None)
        self._write_body(f, start, end, plan, cdn_blob)

    def _write_body(self, f, start, end, plan, blob):
        """Writes bytes [start, end) of `f`: sendfile when nothing interferes (plain HTTP), otherwise a read loop that
        flips the corrupted byte, paces to the throttle and cuts the connection at the drop offset."""
        stop = end if plan.drop_at is None else max(start, min(end, plan.drop_at))
        with f.open() as src:
            src.seek(start)
            fast = (plan.flip_at is None and self.hub._throttle_bps == 0 and f.disk_path is not None
                    and not isinstance(self.connection, ssl.SSLSocket))
            if fast:
                pos = start
                while pos < stop:
                    n = self.connection.sendfile(src, pos, min(SENDFILE_CHUNK, stop - pos))
                    if not n:
                        raise ConnectionError("sendfile made no progress")
                    pos += n
                    self._count_sent(blob, n)
            else:
                self._paced_copy(src, start, stop, plan.flip_at, blob)
        if stop < end:   # the injected drop: an abrupt close mid-body, so the client sees a short transfer
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _paced_copy(self, src, start, stop, flip_at, blob):
        pos = start
        base_time, base_pos, base_rate = time.monotonic(), pos, None
        while pos < stop:
            rate = self.hub._throttle_bps
            if rate != base_rate:     # throttle changed mid-body: pace from here at the new rate
                base_time, base_pos, base_rate = time.monotonic(), pos, rate
            block = src.read(min(PACE_CHUNK if rate else READ_CHUNK, stop - pos))
            if not block:
                raise ConnectionError("file shrank while being served")
            if flip_at is not None and pos <= flip_at < pos + len(block):
                block = bytearray(block)
                block[flip_at - pos] ^= 0xFF
            self.wfile.write(block)
            pos += len(block)
            self._count_sent(blob, len(block))
            if rate:
                delay = base_time + (pos - base_pos) / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

    def _count_sent(self, blob, n):
        self.record["sent"] += n
        if blob:
            self.hub._add_cdn_bytes(blob, n)


def parse_range(value, size):
    """(start, end) for a single `bytes=N-`, `bytes=N-M` or `bytes=-S` range; None when absent, malformed or multiple
    (RFC 9110: ignore it and send the whole file); "unsatisfiable" when it starts past the end."""
    if not value:
        return None
    unit, _, spec = value.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                return "unsatisfiable"
            return (max(0, size - suffix), size) if size else "unsatisfiable"
        start = int(first)
        end = int(last) + 1 if last != "" else max(size, start + 1)
    except ValueError:
        return None
    if start < 0 or end <= start:
        return None
    if start >= size:           # also a valid `bytes=SIZE-`: nothing is left to send
        return "unsatisfiable"
    return start, min(end, size)


class _BodyPlan:
    def __init__(self, drop_at, flip_at):
        self.drop_at, self.flip_at = drop_at, flip_at


class _HubHandler(_Handler):
    """huggingface.co: the JSON API and /resolve."""

    def route(self):
        hub = self.hub
        parts = [urllib.parse.unquote(p) for p in self.url_path.split("/")[1:]]
        api = len(parts) >= 4 and parts[0] == "api" and parts[1] == "models"
        resolve = len(parts) >= 5 and parts[2] in ("resolve", "raw")
        if not (api or resolve):
            return self.reply_json(404, {"error": "Sorry, we can't find the page you are looking for."})

        bucket = "api" if api else "resolvers"
        limited = hub._take_rate_limit(bucket)
        if limited:
            return self.reply_json(429, {"error": "You have been rate-limited; you can retry this action in about "
                                                  "%d seconds." % limited}, {
                "RateLimit": '"%s";r=0;t=%d' % (bucket, limited),
                "RateLimit-Policy": '"fixed window";"%s";q=%d;w=300' % (bucket, 500 if api else 3000)})

        repo_id = "/".join(parts[2:4]) if api else "/".join(parts[0:2])
        if repo_id in hub.renamed:   # the Hub keeps old names working with a same-host, relative redirect
            old, new = (urllib.parse.quote(r) for r in (repo_id, hub.renamed[repo_id]))
            new_path = self.url_path.replace("/" + old, "/" + new, 1)
            query = urllib.parse.urlsplit(self.path).query
            return self.reply(307, b"Temporary Redirect. Redirecting to " + new_path.encode(),
                              headers={"Location": new_path + ("?" + query if query else "")})

        token = self._token()
        if token and hub.valid_tokens is not None and token not in hub.valid_tokens | hub.approved_tokens:
            msg = "Invalid credentials in Authorization header"
            return self.reply_json(401, {"error": msg}, {"X-Error-Message": msg})
        history = hub._history(repo_id)
        if history is None or (repo_id in hub.private and token not in hub.approved_tokens):
            return self._repo_not_found()

        if api:
            rest = parts[4:]
            if not rest:
                return self.model_info(repo_id, history, "main")
            if rest[0] == "revision" and len(rest) == 2:
                return self.model_info(repo_id, history, rest[1])
            if rest[0] == "tree" and len(rest) >= 2:
                return self.tree(repo_id, history, rest[1], "/".join(rest[2:]).strip("/"))
            if rest[0] == "refs" and len(rest) == 1:
                return self.refs(history)
            return self.reply_json(404, {"error": "Sorry, we can't find the page you are looking for."})
        return self.resolve(repo_id, history, parts[2], parts[3], "/".join(parts[4:]), token)

    def _token(self):
        auth = self.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _error(self, status, code, message, headers=None):
        h = {"X-Error-Code": code, "X-Error-Message": message}
        h.update(headers or {})
        self.reply_json(status, {"error": message}, h)

    def _repo_not_found(self):
        self._error(401, "RepoNotFound", "Repository Not Found for url: %s%s." % (self.hub.endpoint, self.path))

    def _snapshot(self, history, rev):
        """(commit, files) of `rev` ("main" or any commit this repo has had), or None after answering 404."""
        for commit, files in (history[-1:] if rev == "main" else history):
            if rev in ("main", commit):
                return commit, files
        self._error(404, "RevisionNotFound", "Invalid rev id: %s" % rev)
        return None

    # -- /api ----------------------------------------------------------------------------------------------------

    def model_info(self, repo_id, history, rev):
        snap = self._snapshot(history, rev)
        if not snap:
            return
        commit, files = snap
        blobs = self.query.get("blobs", "").lower() in ("1", "true")
        siblings = []
        for path in sorted(files):
            f = files[path]
            s = {"rfilename": path}
            if blobs:
                s.update({"blobId": f.oid, "size": f.size})
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
            siblings.append(s)
        gguf = any(p.lower().endswith(".gguf") for p in files)
        self.reply_json(200, {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id,
            "author": repo_id.split("/")[0], "sha": commit, "lastModified": ISO_DATE, "createdAt": ISO_DATE,
            "private": repo_id in self.hub.private, "disabled": False, "gated": self.hub.gated.get(repo_id, False),
            "downloads": 0, "likes": 0, "tags": ["gguf"] if gguf else [], "library_name": "gguf" if gguf else None,
            "siblings": siblings, "usedStorage": sum(f.size for f in files.values())})

    def refs(self, history):
        self.reply_json(200, {"branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": history[-1][0]}],
                              "tags": [], "converts": []})

    def tree(self, repo_id, history, rev, base):
        snap = self._snapshot(history, rev)
        if not snap:
            return
        commit, files = snap
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        entries = _tree_entries(files, base, recursive)
        if entries is None:
            return self._error(404, "EntryNotFound", "%s does not exist on \"%s\"" % (base, rev),
                               {"X-Repo-Commit": commit})
        start = _decode_cursor(self.query.get("cursor"))
        if start is None:
            return self.reply_json(400, {"error": "Invalid cursor"})
        page = max(1, int(self.hub.page_size))
        headers = {}
        if start + page < len(entries):
            query = dict(self.query, cursor=_encode_cursor(start + page))
            headers["Link"] = '<%s%s?%s>; rel="next"' % (self.hub.endpoint, self.url_path,
                                                         urllib.parse.urlencode(query))
        self.reply_json(200, entries[start:start + page], headers)

    # -- /resolve and /raw -------------------------------------------------------------------------------------------

    def resolve(self, repo_id, history, kind, rev, path, token):
        hub = self.hub
        mode = hub.gated.get(repo_id)
        # As on the Hub, a gated repo's model card and .gitattributes stay readable so users can see what they ask for.
        if mode and path not in ("README.md", ".gitattributes") and token not in hub.approved_tokens:
            if token is None:
                return self._error(401, "GatedRepo", "Access to model %s is restricted. You must have access to it "
                                   "and be authenticated to access it. Please log in." % repo_id)
            return self._error(403, "GatedRepo", "Access to model %s is restricted and you are not in the authorized "
                               "list. Visit %s/%s to ask for access." % (repo_id, hub.endpoint, repo_id))
        snap = self._snapshot(history, rev)
        if not snap:
            return
        commit, files = snap
        f = files.get(path)
        if f is None:
            return self._error(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit})
        if kind == "raw":
            body = lfs_pointer(f.sha256, f.size) if f.lfs else f.read_all()
            return self.reply(200, body, "text/plain; charset=utf-8",
                              {"X-Repo-Commit": commit, "ETag": '"%s"' % f.oid})
        if f.lfs:
            return self._redirect_to_cdn(commit, f)
        self._small_file(commit, f)

    def _redirect_to_cdn(self, commit, f):
        location = self.hub._signed_url(f.sha256, os.path.basename(f.path))
        # The real 302 carries an Express-style body and a weak ETag of that body: clients must take the file's
        # identity from X-Linked-Etag/X-Linked-Size, not from ETag/Content-Length.
        body = ("Found. Redirecting to %s" % location).encode()
        etag = 'W/"%x-%s"' % (len(body), base64.b64encode(hashlib.sha1(body).digest()).decode()[:27])
        self.reply(302, body, headers={
            "Location": location, "X-Repo-Commit": commit, "X-Linked-Etag": '"%s"' % f.sha256,
            "X-Linked-Size": str(f.size), "ETag": etag, "Accept-Ranges": "bytes",
            "Vary": "Origin, Accept", "Access-Control-Expose-Headers":
                "X-Repo-Commit,X-Request-Id,X-Error-Code,X-Error-Message,X-Total-Count,ETag,Link,Accept-Ranges,"
                "Content-Range,X-Linked-Size,X-Linked-ETag,X-Xet-Hash"})

    def _small_file(self, commit, f):
        headers = {"X-Repo-Commit": commit, "ETag": '"%s"' % f.oid, "Last-Modified": LAST_MODIFIED,
                   "Content-Type": mimetypes.guess_type(f.path)[0] or "application/octet-stream",
                   "Content-Disposition": 'inline; filename="%s"' % _ascii(os.path.basename(f.path))}
        accept = (self.headers.get("Accept-Encoding") or "").lower()
        if self.hub.gzip_small_files and "gzip" in accept:
            # What makes clients send Accept-Encoding: identity: the length is then the compressed one.
            body = gzip.compress(f.read_all(), mtime=0)
            ctype = headers.pop("Content-Type")
            headers["Content-Encoding"] = "gzip"
            return self.reply(200, body, ctype, headers)
        self.send_range(f, headers)


def _ascii(text):
    """Header values must be Latin-1; keep file names ASCII there (the UTF-8 form goes in filename*)."""
    return text.encode("ascii", "replace").decode().replace('"', "'")


def _tree_entries(files, base, recursive):
    """The tree listing under `base` ("" = root): files and directories, sorted by path; None if `base` is no
    directory of this snapshot."""
    prefix = base + "/" if base else ""
    dirs, out = set(), []
    for path in files:
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix):].split("/")
        for i in range(1, len(parts) if recursive else min(2, len(parts))):
            dirs.add(prefix + "/".join(parts[:i]))
        if recursive or len(parts) == 1:
            out.append(path)
    if base and not out and not dirs:
        return None
    entries = []
    for d in dirs:
        entries.append({"type": "directory", "oid": hashlib.sha1(b"tree " + d.encode()).hexdigest(), "size": 0,
                        "path": d})
    for path in out:
        f = files[path]
        e = {"type": "file", "oid": f.oid, "size": f.size, "path": path}
        if f.lfs:
            e["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
        entries.append(e)
    entries.sort(key=lambda e: e["path"])
    return entries


def _encode_cursor(offset):
    """An opaque cursor as the Hub's are, so a client has to follow the Link header rather than compute pages."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def _decode_cursor(cursor):
    if not cursor:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["offset"]
        return offset if isinstance(offset, int) and offset >= 0 else None
    except (ValueError, KeyError, TypeError):
        return None


class _CDNHandler(_Handler):
    """cdn-lfs.hf.co: signed blob URLs, byte ranges, and the injected faults."""

    def route(self):
        hub = self.hub
        parts = self.url_path.split("/")
        if len(parts) != 3 or parts[1] != "blobs":
            return self._denied(404, "NoSuchKey", "The specified key does not exist.")
        sha = parts[2]
        problem = hub._check_signature(sha, self.query)
        if problem:
            return self._denied(403, "AccessDenied", problem)
        if hub.cdn_reject_authorization and "Authorization" in self.headers:
            # S3 behind a presigned URL answers this way to a client that forwards its Hub token.
            return self._denied(400, "InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm "
                                "query parameter, Signature query string parameter or the Authorization header "
                                "should be specified")
        f = hub._blob(sha)
        if f is None:
            return self._denied(404, "NoSuchKey", "The specified key does not exist.")
        name = _ascii(self.query.get("response-content-disposition", "")) or "attachment"
        headers = {"Content-Type": "binary/octet-stream", "ETag": '"%s"' % hashlib.md5(sha.encode()).hexdigest(),
                   "Last-Modified": LAST_MODIFIED, "Content-Disposition": name, "X-Cache": "Miss from cloudfront"}
        self.send_range(f, headers, honour_range=not hub.ignore_range, cdn_blob=sha)

    def _denied(self, status, code, message):
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>'
                % (code, message)).encode()
        self.reply(status, body, "application/xml")


# --------------------------------------------------------------------------------------------------------------------
# The public object

class FakeHub:
    """A running fake Hub + CDN. See the module docstring; every attribute below may be changed at any time.

    repos            {"user/repo": {path: bytes | file path}}
    tls              serve HTTPS on both servers with a fresh CA (see ca_file)
    gated            {"user/repo": "auto" | "manual"}: downloads need a token in approved_tokens
    private          a set of repo ids that only tokens in approved_tokens can see (others get RepoNotFound)
    lfs              extra paths to treat as LFS: "path" (any repo) or ("user/repo", "path"); *.gguf always are
    approved_tokens  tokens granted access to the gated and private repos
    valid_tokens     None: any bearer token is a real account; a set: other tokens get 401 "Invalid credentials"
    page_size        tree entries per page
    renamed          {"old/name": "new/name"}: the old name answers a relative 307 to the new one
    port, cdn_port   0 = free ports
    url_ttl          lifetime of the signed CDN URLs, seconds
    cert_dir         with tls: keep the CA there and reuse it across hubs (a client process that reads its trust
                     store once, as the gateway's TLS client does, then trusts every hub); default a temp dir
    """

    def __init__(self, repos, tls=False, *, gated=None, private=None, lfs=(), approved_tokens=(), valid_tokens=None,
                 page_size=1000, renamed=None, port=0, cdn_port=0, url_ttl=3600, cert_dir=None, verbose=False):
        self.tls = tls
        self.gated = dict(gated or {})
        self.private = set(private or ())
        self.approved_tokens = set(approved_tokens)
        self.valid_tokens = None if valid_tokens is None else set(valid_tokens)
        self.page_size = page_size
        self.renamed = dict(renamed or {})
        self.url_ttl = url_ttl
        self.verbose = verbose
        self.ignore_range = False            # CDN answers Range requests with 200 + the whole file
        self.gzip_small_files = False        # hub gzips small files for clients that accept gzip
        self.cdn_reject_authorization = False  # CDN answers 400 to a request that carries Authorization
        self.requests = []
        self.cdn_bytes_sent = defaultdict(int)
        self.ca_file = None                  # with tls: the CA's PEM, for SSL_CERT_FILE / curl --cacert

        self._lock = threading.Lock()
        self._lfs_marks = set(lfs)
        self._repos = {}
        for repo_id, files in repos.items():
            self._repos[repo_id] = [(_commit_id(repo_id, 0), self._build_files(repo_id, files))]
        self._secret = secrets.token_bytes(32)
        self._drops = {}                     # sha256 -> [offset, times left]
        self._corruptions = {}               # sha256 -> [offset or None, times left or None]
        self._rate_limits = {}               # bucket -> [count, seconds]
        self._throttle_bps = 0
        self._tmpdir = tempfile.mkdtemp(prefix="fakehub-")
        self._cert_dir = cert_dir or self._tmpdir
        self._servers = []
        self._serving = []                   # the servers whose serve_forever runs (shutdown() would wait on others)
        self._stopped = False
        try:
            self._start(port, cdn_port)
        except BaseException:
            self.stop()
            raise

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def _start(self, port, cdn_port):
        context = None
        if self.tls:
            self.ca_file, cert, key = _make_certificates(self._cert_dir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
        hub = _Server(("127.0.0.1", port), _HubHandler, self, "hub", context)
        self._servers.append(hub)
        self._servers.extend(self._bind_cdn(cdn_port, context))
        scheme = "https" if self.tls else "http"
        self.port, self.cdn_port = hub.server_address[1], self._servers[1].server_address[1]
        self.endpoint = "%s://127.0.0.1:%d" % (scheme, self.port)
        self.cdn_endpoint = "%s://localhost:%d" % (scheme, self.cdn_port)
        for server in self._servers:
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                             name="fakehub-%s" % server.kind).start()
            self._serving.append(server)

    def _bind_cdn(self, cdn_port, context):
        """The CDN on 127.0.0.1 and, where the machine has IPv6, on [::1] at the same port: "localhost" resolves to
        ::1 first on macOS, and a refused first address would slow every CDN connection."""
        for _ in range(20):
            v4 = _Server(("127.0.0.1", cdn_port), _CDNHandler, self, "cdn", context)
            try:
                return [v4, _Server(("::1", v4.server_address[1]), _CDNHandler, self, "cdn", context, socket.AF_INET6)]
            except OSError as e:
                if cdn_port or e.errno != errno.EADDRINUSE:   # no IPv6 here: IPv4 alone
                    return [v4]
                v4.server_close()                             # that port is taken on ::1: try another
        return [_Server(("127.0.0.1", 0), _CDNHandler, self, "cdn", context)]

    def stop(self):
        """Stops both servers, cuts their open connections and removes the certificates."""
        if self._stopped:
            return
        self._stopped = True
        for server in self._servers:
            if server in self._serving:
                server.shutdown()
            server.server_close()
            server.cut_connections()
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- repos ---------------------------------------------------------------------------------------------------

    def _build_files(self, repo_id, files):
        built = {}
        for path, source in files.items():
            path = path.strip("/")
            built[path] = RepoFile(path, source, _is_lfs(repo_id, path, self._lfs_marks))
            built[path].digests()            # hash now, so the first request is not the slow one
        return built

    def commit(self, repo_id, rev="main"):
        """The commit `main` points at (or, given an older commit, that one if the repo had it)."""
        history = self._repos[repo_id]
        return history[-1][0] if rev == "main" else next(c for c, _ in history if c == rev)

    def update(self, repo_id, files=None, remove=()):
        """A new commit on `main`: `files` added or replaced, `remove` deleted (a new repo if unknown). Older commits
        stay resolvable by id. Returns the new commit."""
        added = self._build_files(repo_id, files or {})   # hashed outside the lock: requests go on meanwhile
        with self._lock:
            history = self._repos.setdefault(repo_id, [])
            current = dict(history[-1][1]) if history else {}
            for path in remove:
                current.pop(path.strip("/"), None)
            current.update(added)
            commit = _commit_id(repo_id, len(history))
            history.append((commit, current))
            return commit

    def sha256(self, repo_id, path):
        return self._repos[repo_id][-1][1][path].sha256

    def resolve_url(self, repo_id, path, rev="main"):
        return "%s/%s/resolve/%s/%s" % (self.endpoint, repo_id, rev, urllib.parse.quote(path))

    def _history(self, repo_id):
        return self._repos.get(repo_id)

    def _all_files(self):
        with self._lock:
            return [f for history in self._repos.values() for _, files in history for f in files.values()]

    def _blob(self, sha):
        return next((f for f in self._all_files() if f.lfs and f.sha256 == sha), None)

    def _key_to_sha(self, key):
        """A fault's target: a sha256, a repo path ("x.gguf" or "user/repo/x.gguf") or a file's path on disk."""
        files = self._all_files()
        for f in files:
            if key in (f.sha256, f.path):
                return f.sha256
        for repo_id, history in self._repos.items():
            for _, snap in history:
                if key.startswith(repo_id + "/") and key[len(repo_id) + 1:] in snap:
                    return snap[key[len(repo_id) + 1:]].sha256
        real = os.path.realpath(os.fspath(key))
        for f in files:
            if f.disk_path and os.path.realpath(f.disk_path) == real:
                return f.sha256
        raise KeyError("fakehub: no file %r" % (key,))

    # -- signed URLs ---------------------------------------------------------------------------------------------

    def _signature(self, sha, expires):
        return hmac.new(self._secret, ("%s:%s" % (sha, expires)).encode(), hashlib.sha256).hexdigest()

    def _signed_url(self, sha, filename):
        expires = int(time.time() + self.url_ttl)
        policy = base64.b64encode(json.dumps({"Statement": [{"Condition": {"DateLessThan": {
            "AWS:EpochTime": expires}}}]}).encode()).decode().replace("+", "-").replace("=", "_").replace("/", "~")
        disposition = "inline; filename*=UTF-8''%s; filename=\"%s\";" % (urllib.parse.quote(filename), _ascii(filename))
        query = urllib.parse.urlencode({"response-content-disposition": disposition, "Expires": expires,
                                        "Policy": policy, "Signature": self._signature(sha, expires),
                                        "Key-Pair-Id": "KFAKEHUB0000000"})
        return "%s/blobs/%s?%s" % (self.cdn_endpoint, sha, query)

    def _check_signature(self, sha, query):
        """None when the URL is one we signed and not yet expired, else CloudFront's reason for the 403."""
        if "Signature" not in query or "Expires" not in query or "Key-Pair-Id" not in query:
            return "Missing Key-Pair-Id query parameter or cookie value"
        if not hmac.compare_digest(query["Signature"].encode(), self._signature(sha, query["Expires"]).encode()):
            return "Access denied"
        try:
            if int(query["Expires"]) < time.time():
                return "Request has expired"
        except ValueError:
            return "Access denied"
        return None

    # -- faults --------------------------------------------------------------------------------------------------

    def drop_after(self, sha256_or_path, nbytes, times=1):
        """The next `times` CDN GETs of that blob are cut (connection closed, no more bytes) once the body reaches
        file offset `nbytes`, counted from byte 0 of the file also for a Range request; one that starts at or past
        it is cut right after its headers; one whose range ends before it is unaffected and uses up nothing."""
        sha = self._key_to_sha(sha256_or_path)
        with self._lock:
            self._drops[sha] = [int(nbytes), int(times)]

    def corrupt(self, sha256_or_path, times=None, offset=None):
        """CDN bodies of that blob come with one byte flipped (at `offset`, default the middle), same size.
        `times` None = until clear_faults(); otherwise that many responses that contain the byte."""
        sha = self._key_to_sha(sha256_or_path)
        with self._lock:
            self._corruptions[sha] = [offset, times]

    def rate_limit(self, n=1, retry_after=2, bucket="resolvers"):
        """The next `n` requests of the bucket ("resolvers" = /resolve and /raw, "api" = /api/*) get 429 with the
        Hub's RateLimit headers saying to wait `retry_after` seconds."""
        with self._lock:
            self._rate_limits[bucket] = [int(n), int(retry_after)]

    def throttle(self, bytes_per_second):
        """Paces CDN bodies (64 KiB writes) to that rate, also the ones already under way; 0 = full speed."""
        self._throttle_bps = max(0, int(bytes_per_second))

    def clear_faults(self):
        with self._lock:
            self._drops.clear()
            self._corruptions.clear()
            self._rate_limits.clear()
        self._throttle_bps = 0
        self.ignore_range = False

    def _take_rate_limit(self, bucket):
        with self._lock:
            entry = self._rate_limits.get(bucket)
            if not entry or entry[0] <= 0:
                return 0
            entry[0] -= 1
            return entry[1]

    def _body_plan(self, sha, start, end, size):
        """Which faults hit this body [start, end), using them up."""
        drop_at = flip_at = None
        with self._lock:
            drop = self._drops.get(sha)
            if drop and drop[1] > 0 and drop[0] < end:
                drop_at = drop[0]
                drop[1] -= 1
            bad = self._corruptions.get(sha)
            if bad and size:
                at = bad[0] if bad[0] is not None else size // 2
                if start <= at < end and (drop_at is None or at < drop_at) and (bad[1] is None or bad[1] > 0):
                    flip_at = at
                    if bad[1] is not None:
                        bad[1] -= 1
        return _BodyPlan(drop_at, flip_at)

    # -- observability -------------------------------------------------------------------------------------------

    def _log(self, record):
        with self._lock:
            self.requests.append(record)

    def _add_cdn_bytes(self, sha, n):
        with self._lock:
            self.cdn_bytes_sent[sha] += n

    def count(self, server, path_prefix="", method=None, status=None):
        """How many logged requests went to `server` ("hub"|"cdn") with a path starting with `path_prefix`
        (and, when given, that method and response status)."""
        with self._lock:
            return sum(1 for r in self.requests if r["server"] == server and r["path"].startswith(path_prefix)
                       and method in (None, r["method"]) and status in (None, r["status"]))

    def clear_log(self):
        with self._lock:
            self.requests.clear()
            self.cdn_bytes_sent.clear()


# --------------------------------------------------------------------------------------------------------------------
# Manual use

def main(argv=None):
    parser = argparse.ArgumentParser(description="Serve files as a fake Hugging Face Hub repo.")
    parser.add_argument("--serve", nargs="+", required=True, metavar="REPO_ID FILE",
                        help="the repo id, then its files (FILE or NAME=FILE)")
    parser.add_argument("--tls", action="store_true", help="HTTPS with a throwaway CA (printed as SSL_CERT_FILE)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cdn-port", type=int, default=0)
    parser.add_argument("--gated", choices=("auto", "manual"))
    parser.add_argument("--approve", action="append", default=[], metavar="TOKEN", help="a token let into a gated repo")
    parser.add_argument("--throttle", type=int, default=0, metavar="BYTES_PER_S")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    if len(args.serve) < 2:
        parser.error("--serve needs REPO_ID and at least one FILE")
    repo_id, files = args.serve[0], {}
    for spec in args.serve[1:]:
        name, eq, path = spec.partition("=")
        files[name if eq else os.path.basename(spec)] = path if eq else spec
    hub = FakeHub({repo_id: files}, tls=args.tls, gated={repo_id: args.gated} if args.gated else None,
                  approved_tokens=args.approve, port=args.port, cdn_port=args.cdn_port, verbose=args.verbose)
    hub.throttle(args.throttle)
    print(hub.endpoint)
    print("# cdn %s" % hub.cdn_endpoint)
    if hub.ca_file:
        print("# SSL_CERT_FILE=%s" % hub.ca_file)
    for name in files:
        print("# %s  sha256 %s" % (hub.resolve_url(repo_id, name), hub.sha256(repo_id, name)))
    sys.stdout.flush()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    hub.stop()


if __name__ == "__main__":
    main()
