#!/usr/bin/env python3
"""Validate openapi/openapi.yaml, then validate real daemon responses with it.

1. The document: OpenAPI 3.1 top-level shape, every $ref resolves, every
   schema is a valid JSON Schema 2020-12, and every route of the router
   table in src/api/api.c has a path (and the reverse).
2. The daemon: starts QD_BIN serve on a free port with the default model
   (QUANTD_CACHE in a temporary directory: the generated tiny model), sends
   a request to every endpoint (successes, streams and errors), and checks
   each response body — and each SSE event of a stream — against the schema
   the document gives for that path, method, status and content type.

Exit status: 0 pass, 1 fail, 77 skipped (python modules or binary missing).
Usage: validate_openapi.py [--doc-only]   (run from the repository root)
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

try:
    import jsonschema
    import yaml
except ImportError as e:  # pragma: no cover
    print(f"SKIP: python module missing ({e.name}); pip install jsonschema pyyaml")
    sys.exit(77)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC_PATH = os.path.join(ROOT, "openapi", "openapi.yaml")
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


# ---- the document ---------------------------------------------------------

def resolve(doc, ref):
    if not ref.startswith("#/"):
        raise KeyError(ref)
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def walk_refs(doc, node, where):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                try:
                    resolve(doc, v)
                except (KeyError, TypeError):
                    fail(f"{where}: unresolved $ref {v}")
            else:
                walk_refs(doc, v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            walk_refs(doc, v, f"{where}/{i}")


def check_document(doc):
    if not str(doc.get("openapi", "")).startswith("3.1"):
        fail("openapi: not 3.1.x")
    for key in ("info", "paths", "components"):
        if key not in doc:
            fail(f"missing top-level '{key}'")
    if "title" not in doc.get("info", {}) or "version" not in doc.get("info", {}):
        fail("info needs title and version")
    walk_refs(doc, doc, "#")
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as e:
            fail(f"schema {name}: {e.message}")
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "delete", "patch", "head", "options"):
                continue
            if "responses" not in op or not op["responses"]:
                fail(f"{method.upper()} {path}: no responses")
            if "operationId" not in op:
                fail(f"{method.upper()} {path}: no operationId")
    # Router table ↔ paths.
    src = open(os.path.join(ROOT, "src", "api", "api.c"), encoding="utf-8").read()
    routes = set(re.findall(r'\{"(/[a-z0-9/_]+)",\s*"(GET|POST)"', src))
    routes.add(("/v1/models/{model}", "GET"))
    documented = {(p, m.upper()) for p, item in doc["paths"].items() for m in item
                  if m in ("get", "post")}
    for r in sorted(routes - documented):
        fail(f"route {r[1]} {r[0]} is served but not documented")
    for r in sorted(documented - routes):
        fail(f"{r[1]} {r[0]} is documented but not served")


def validator(doc, ref):
    schema = {"$ref": ref, "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


def response_schema(doc, path, method, status, ctype, event=False):
    op = doc["paths"][path][method]
    resp = op["responses"].get(str(status))
    if resp is None:
        return None, f"{method.upper()} {path}: status {status} not documented"
    if "$ref" in resp:
        resp = resolve(doc, resp["$ref"])
    media = resp.get("content", {}).get(ctype)
    if media is None:
        return None, f"{method.upper()} {path} {status}: content type {ctype} not documented"
    if event:
        return media["x-event-schema"]["$ref"], None
    s = media["schema"]
    return s.get("$ref"), None


# ---- the daemon -----------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def request(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=None if body is None else json.dumps(body),
                 headers=headers)
    r = conn.getresponse()
    data = r.read().decode("utf-8", "replace")
    ctype = (r.getheader("Content-Type") or "").split(";")[0].strip()
    conn.close()
    return r.status, ctype, data


def check_response(doc, port, method, path, doc_path, body, want_status):
    status, ctype, data = request(port, method.upper(), path, body)
    label = f"{method.upper()} {path} {json.dumps(body)[:60] if body else ''}"
    if status != want_status:
        fail(f"{label}: status {status}, want {want_status}: {data[:200]}")
        return
    ref, err = response_schema(doc, doc_path, method, status, ctype)
    if err:
        fail(f"{label}: {err}")
        return
    if ctype == "text/event-stream":
        ref, _ = response_schema(doc, doc_path, method, status, ctype, event=True)
        v = validator(doc, ref)
        events = [e for e in data.split("\n\n") if e.strip()]
        if not events or events[-1] != "data: [DONE]":
            fail(f"{label}: stream does not end with data: [DONE]")
        n = 0
        for e in events:
            if e.startswith(":") or e == "data: [DONE]":
                continue
            if not e.startswith("data: "):
                fail(f"{label}: bad SSE event {e[:60]!r}")
                continue
            for err in v.iter_errors(json.loads(e[6:])):
                fail(f"{label}: event {n}: {err.message} at {list(err.path)}")
            n += 1
        print(f"ok  {label} -> {status} {ctype}, {n} events")
        return
    if ref is None:  # plain text (metrics)
        print(f"ok  {label} -> {status} {ctype}")
        return
    try:
        j = json.loads(data)
    except ValueError:
        fail(f"{label}: body is not JSON: {data[:200]}")
        return
    errs = list(validator(doc, ref).iter_errors(j))
    for err in errs:
        fail(f"{label}: {err.message} at {list(err.path)}")
    if not errs:
        print(f"ok  {label} -> {status} {ref.split('/')[-1]}")


def check_daemon(doc):
    bin_ = os.environ.get("QD_BIN") or os.path.join(ROOT, "build", "quantd")
    if not os.access(bin_, os.X_OK):
        print(f"SKIP: daemon checks: no binary at {bin_}")
        return 77
    tmp = tempfile.mkdtemp(prefix="qd-openapi-", dir=os.environ.get("QD_TMP"))
    port = free_port()
    env = dict(os.environ, QUANTD_CACHE=os.path.join(tmp, "cache"))
    log = open(os.path.join(tmp, "quantd.log"), "w")
    proc = subprocess.Popen([bin_, "serve", "--host", "127.0.0.1", "--port",
                             str(port), "-t", "1"], env=env, stderr=log)
    try:
        for _ in range(400):
            try:
                if request(port, "GET", "/ready")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                fail("daemon exited at start-up: " + open(log.name).read()[-500:])
                return 1
            time.sleep(0.05)
        else:
            fail("daemon not ready after 20 s")
            return 1
        chat = {"model": "default", "max_tokens": 4, "temperature": 0,
                "messages": [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Hello"}]}
        cmpl = {"model": "default", "prompt": "Once upon", "max_tokens": 4}
        cases = [
            ("get", "/health", "/health", None, 200),
            ("get", "/ready", "/ready", None, 200),
            ("get", "/metrics", "/metrics", None, 200),
            ("get", "/v1/models", "/v1/models", None, 200),
            ("get", "/v1/models/default", "/v1/models/{model}", None, 200),
            ("get", "/v1/models/nope", "/v1/models/{model}", None, 404),
            ("post", "/tokenize", "/tokenize",
             {"model": "default", "content": "hello world", "add_special": True}, 200),
            ("post", "/detokenize", "/detokenize", {"tokens": [1, 72, 105]}, 200),
            ("post", "/detokenize", "/detokenize", {"tokens": "x"}, 400),
            ("post", "/v1/chat/completions", "/v1/chat/completions", chat, 200),
            ("post", "/v1/chat/completions", "/v1/chat/completions",
             dict(chat, logprobs=True, top_logprobs=2, n=2), 200),
            ("post", "/v1/chat/completions", "/v1/chat/completions",
             dict(chat, stream=True, stream_options={"include_usage": True}), 200),
            ("post", "/v1/chat/completions", "/v1/chat/completions",
             dict(chat, temperature=5), 400),
            ("post", "/v1/chat/completions", "/v1/chat/completions",
             dict(chat, model="nope"), 404),
            ("post", "/v1/completions", "/v1/completions", cmpl, 200),
            ("post", "/v1/completions", "/v1/completions",
             dict(cmpl, logprobs=2, prompt=[1, 72, 105]), 200),
            ("post", "/v1/completions", "/v1/completions", dict(cmpl, stream=True), 200),
            ("post", "/v1/completions", "/v1/completions", {"model": "default"}, 400),
        ]
        for method, path, doc_path, body, want in cases:
            check_response(doc, port, method, path, doc_path, body, want)
        # An unknown URL still answers with the Error schema.
        status, _, data = request(port, "GET", "/nope")
        errs = list(validator(doc, "#/components/schemas/Error").iter_errors(json.loads(data)))
        if status != 404 or errs:
            fail(f"GET /nope: {status} {data[:200]}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main():
    with open(DOC_PATH, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    check_document(doc)
    rc = 0
    if "--doc-only" not in sys.argv and not failures:
        rc = check_daemon(doc)
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    if rc == 77:
        print("openapi: document valid; daemon checks skipped")
        return 77
    print("openapi: document and responses valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
