"""The API server's own work per request, in process: what a create and an update cost apart from
aiohttp's I/O, TLS and the store's round trips — beside the floor any server pays for the same
object (parse the JSON body, msgpack the stored object, encode the JSON answer), measured in the
same run.

Per request: routing (the app's router), the token lookup, a request id, the path, the query, the
body's decoding, type meta and field validation, the server's fields, ObjectMeta and the kind's
validation, managedFields, msgpack of the event, the JSON answer, and the audit record (handed to
a writer that keeps it). An update is a PUT of the benchmark's ConfigMap with its resourceVersion,
as bench/api.py sends it. Requests are aiohttp's mocked requests on the real app, so header and
routing costs are aiohttp's own.

`--against PATH` also measures another checkout (e.g. `git worktree add /tmp/base <commit>`) in a
child process, alternating with this tree's, so that drift in the machine's load hits both.
Run: `.venv/bin/python bench/api_inprocess.py [--against PATH] [--rounds 3] [--json]`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NS = "bench"


def measure(tree: Path, requests: int, reps: int) -> dict[str, float]:
    """Best-of-`reps` CPU µs per request of `tree`'s code (imported from there)."""
    sys.path.insert(0, str(tree))
    import msgpack
    import orjson
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    import _common as c
    from eventplane.api import audit, codec, strategy
    from eventplane.api.app import build_app
    from eventplane.api.registry import Caller, Registry, _json_copy  # noqa: F401
    from eventplane.api.requestinfo import parse_path
    from eventplane.api.rest import ResourceHandler, _check_params, caller_of, write_options
    from eventplane.auth.identity import authenticated_user  # noqa: F401
    from eventplane.auth.tokens import TokenFile, ensure_admin_token
    from eventplane.objects.auditpolicy import DEFAULT_POLICY
    from eventplane.objects.events import pack
    from eventplane.objects.schema import Catalog

    catalog = Catalog.builtin()
    info = catalog.get("", "v1", "configmaps")
    registry = Registry(None, lambda: catalog)
    rng = random.Random(1)
    app = build_app(authenticate=lambda r: None, catalog=lambda: catalog,
                    resources=ResourceHandler(None, lambda: catalog, None), openapi=lambda: None,
                    ready=lambda: True, server_address="bench")
    app.freeze()
    tmp = Path(tempfile.mkdtemp(prefix="api-inprocess-"))
    token = ensure_admin_token(tmp / "tokens.csv")
    tokens = TokenFile.load(tmp / "tokens.csv")

    class Keep:
        def record(self, rec):
            self.last = rec

    auditor = audit.Auditor(Keep(), DEFAULT_POLICY, None)
    received = audit.now()
    path = f"/api/v1/namespaces/{NS}/configmaps"
    headers = {"User-Agent": "eventplane-bench/1", "Content-Type": "application/json",
               "Accept": "application/json", "Authorization": "Bearer " + token}

    def body(name: str, rv: str | None = None) -> bytes:
        obj = c.configmap(name, writer=3, seq=1, namespace=NS)
        del obj["metadata"]["uid"]
        if rv:
            obj["metadata"]["resourceVersion"] = rv
        return json.dumps(obj, separators=(",", ":")).encode()

    async def begin(req):
        await app.router.resolve(req)
        req["request_id"] = strategy.new_uid()
        req["user"] = tokens.lookup(token)
        _check_params(req, {"dryRun", "fieldManager", "fieldValidation", "force", "timeout"})
        return parse_path(req.path)

    def finish(req, obj, status):
        resp = web.Response(body=codec.encode(obj), status=status, content_type="application/json")
        auditor.record_http(req, received=received, code=status, stage="ResponseComplete", response=resp, body=None)

    async def create(req, raw):
        await begin(req)
        obj, dups = codec.decode_body(raw, "application/json")
        caller, opts = caller_of(req), write_options(req, dups)
        obj = strategy.check_type_meta(info, obj)
        strategy.validate_fields(info, obj, opts.field_validation, opts.duplicates)
        obj = strategy.prepare_create(info, obj, namespace=NS, rng=rng)
        strategy.validate_object(info, obj, None)
        obj = registry._manage(info, None, obj, caller, opts, operation="Update")
        pack(obj)
        obj["metadata"]["resourceVersion"] = "7"
        finish(req, obj, 201)
        return obj

    async def update(req, raw, old):
        ri = await begin(req)
        new, dups = codec.decode_body(raw, "application/json")
        caller, opts = caller_of(req), write_options(req, dups)
        new = strategy.check_type_meta(info, new)
        strategy.validate_fields(info, new, opts.field_validation, opts.duplicates)
        new["metadata"]["name"] = ri.name
        _json_copy(new)  # the registry's copy for a retry from a fresh read
        new = strategy.prepare_update(info, new, old)
        strategy.validate_object(info, new, old)
        new = registry._manage(info, old, new, caller, opts, operation="Update")
        strategy.same_content(new, old)
        pack(new)
        finish(req, new, 200)

    def floor(raw, stored):
        orjson.loads(raw)
        msgpack.packb(stored)
        orjson.dumps(stored)

    async def run() -> dict[str, float]:
        creates = [(make_mocked_request("POST", path, headers=headers, app=app), body(f"cm-{i}"))
                   for i in range(requests)]
        stored = [await create(req, raw) for req, raw in creates]
        updates = []
        for obj in stored:
            name = obj["metadata"]["name"]
            raw = body(name, rv="7")
            updates.append((make_mocked_request("PUT", f"{path}/{name}", headers=headers, app=app), raw, obj))
        best = {"create_us": 1e9, "update_us": 1e9, "floor_us": 1e9}
        for _ in range(reps):
            t = time.process_time()
            for req, raw in creates:
                await create(req, raw)
            best["create_us"] = min(best["create_us"], (time.process_time() - t) / requests * 1e6)
            t = time.process_time()
            for req, raw, old in updates:
                await update(req, raw, old)
            best["update_us"] = min(best["update_us"], (time.process_time() - t) / requests * 1e6)
            t = time.process_time()
            for (_, raw), obj in zip(creates, stored):
                floor(raw, obj)
            best["floor_us"] = min(best["floor_us"], (time.process_time() - t) / requests * 1e6)
        return best

    return asyncio.run(run())


def child(tree: Path, args: argparse.Namespace) -> dict[str, float]:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(tree),
                          "--requests", str(args.requests), "--reps", str(args.reps)],
                         capture_output=True, text=True, check=True, cwd=tree)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--against", type=Path, help="another checkout to measure alternately with this one")
    p.add_argument("--rounds", type=int, default=3, help="alternations (each tree once per round)")
    p.add_argument("--requests", type=int, default=300, help="distinct objects per pass")
    p.add_argument("--reps", type=int, default=9, help="passes per measurement; the best is kept")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.requests, args.reps)))
        return 0
    trees = {"this": HERE.parent}
    if args.against:
        trees["against"] = args.against.resolve()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            results[name].append(child(tree, args))
    if args.json:
        print(json.dumps({name: {"tree": str(trees[name]), "runs": runs} for name, runs in results.items()}, indent=2))
        return 0
    print(f"the API server's own work per request, in process (best of {args.reps} x {args.requests}; "
          f"load average {os.getloadavg()[0]:.1f}); µs of CPU per request, each round")
    for name, runs in results.items():
        print(f"  {name:8s} {trees[name]}")
        for key, label in (("create_us", "create (POST)"), ("update_us", "update (PUT)"),
                           ("floor_us", "floor: JSON in, msgpack, JSON out")):
            figures = " / ".join(f"{r[key]:6.1f}" for r in runs)
            print(f"    {label:36s} {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
