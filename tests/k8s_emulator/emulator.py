#!/usr/bin/env python3
"""A Kubernetes API emulator for Kiln's tests, built on kmock 0.8's public API only.

Run it as `python tests/k8s_emulator/emulator.py` in a venv with `requirements.txt` (beside
this file; kmock is pinned because its README says it may change without notice). It prints
`READY http://127.0.0.1:PORT` once listening and runs until killed or until its stdin
closes (so a test process that dies cannot leave it behind; `--forever` disables that).

kmock gives us the HTTP server, the API discovery documents (k3s built-ins) and /version.
Its object store is not used: nearly every write path needed a different behaviour
(see /work/shared/notes/k8s-testing.md), so requests for objects are served here from
a plain dict with the semantics kube-rs relies on:

- namespaces are a cluster-scoped resource; deleting one deletes what is inside it;
- errors are `Status` bodies with the real reasons (NotFound, AlreadyExists, Conflict, ...);
- resourceVersion (one global counter), uid, creationTimestamp, namespace and generation
  are stamped; PUT replaces and checks resourceVersion; server-side apply is a merge patch
  that creates a missing object;
- `.status` is written only through the status subresource, and never on create;
- label and field selectors on list, watch and deletecollection; watch resumes from a
  resourceVersion (every event is kept), honours timeoutSeconds and sendInitialEvents.

Extras that a real cluster gets from kubelet or RBAC, driven by the test through /_kmock:

- PUT /_kmock/exec [{"contains": "psql", "pod"?: .., "stdout": .., "stderr": .., "exit": 3}]
  canned answers for pods/exec (first rule whose `contains` is in the joined argv wins).
  Without a rule, an exec with stdin echoes every stdin byte on stdout, answers a resize
  with "\\r\\n[resize WxH]\\r\\n", and ends with success on Ctrl-D or when stdin closes;
  an exec without stdin prints its argv. A rule with "read_stdin": true first reads stdin to
  its close and keeps it in the call as "stdin_text". GET /_kmock/exec/calls lists every call.
- PUT /_kmock/logs/NS/POD sets a pod's log, POST appends, POST .../end ends followers.
- PUT /_kmock/deny {"namespaces": [..]} makes SelfSubjectAccessReviews there come back denied.
- PUT /_kmock/fail [{"method": "POST", "path_contains": "statefulsets", "status": 500,
  "times": 2, "delay_ms": 0}] injects errors or delays; GET /_kmock/fail shows what is left.
- GET /_kmock/objects dumps every stored object; GET /_kmock/reviews lists access reviews;
  GET /_kmock/requests lists every API request made so far (method and path).

Objects in pods/exec and pods/log must exist (404 otherwise), and a container that the pod's
spec does not list is a 400, as on a real cluster.
"""

import asyncio
import copy
import datetime
import json
import re
import sys
import uuid

import aiohttp
import aiohttp.web
import jsonpatch
import kmock

REASONS = {400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound',
           405: 'MethodNotAllowed', 409: 'Conflict', 410: 'Expired', 422: 'Invalid',
           429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout'}


class ApiError(Exception):
    """An error answered as a Kubernetes `Status`, which kube-rs turns into `Error::Api`."""

    def __init__(self, code, message, reason=None, details=None):
        super().__init__(message)
        self.code, self.message = code, message
        self.reason = reason or REASONS.get(code, 'Unknown')
        self.details = details or {}

    def response(self):
        return aiohttp.web.json_response(status_body(self.code, self.reason, self.message, self.details),
                                         status=self.code)


def status_body(code, reason, message, details=None):
    status = 'Success' if code < 400 else 'Failure'
    return {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': status,
            'code': code, 'reason': reason, 'message': message, 'details': details or {}}


class Route:
    """What a resource path names: /api/v1/... or /apis/GROUP/VERSION/..."""

    def __init__(self, group, version, plural, namespace, name, sub):
        self.group, self.version, self.plural = group, version, plural
        self.namespace, self.name, self.sub = namespace, name, sub

    @classmethod
    def parse(cls, path):
        parts = [p for p in path.split('/') if p]
        if parts[:1] == ['api'] and len(parts) >= 3:
            group, version, rest = '', parts[1], parts[2:]
        elif parts[:1] == ['apis'] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None  # discovery or /version: kmock serves those
        namespace = None
        # kmock reads /api/v1/namespaces/X as "everything in namespace X"; a namespace's own
        # subresources (status, finalize) and the namespace itself are the resource instead.
        if rest[0] == 'namespaces' and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ('status', 'finalize')):
            namespace, rest = rest[1], rest[2:]
        return cls(group, version, rest[0], namespace, rest[1] if len(rest) > 1 else None,
                   '/'.join(rest[2:]) or None)

    @property
    def api_version(self):
        return f'{self.group}/{self.version}' if self.group else self.version

    @property
    def what(self):
        return f'{self.plural}.{self.group}' if self.group else self.plural


def now():
    return datetime.datetime.now(tz=datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (strategic merge and apply are approximated by it)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def split_terms(selector):
    """Split a selector on commas that are not inside `in (a,b)` parentheses."""
    terms, depth, current = [], 0, ''
    for ch in selector:
        depth += {'(': 1, ')': -1}.get(ch, 0)
        if ch == ',' and depth == 0:
            terms.append(current)
            current = ''
        else:
            current += ch
    terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def label_matcher(selector):
    """A predicate on a labels dict for =, ==, !=, in, notin, key (exists) and !key."""
    checks = []
    for term in split_terms(selector or ''):
        if m := re.fullmatch(r'([\w./-]+)\s+(in|notin)\s*\(([^)]*)\)', term):
            key, op, values = m[1], m[2], {v.strip() for v in m[3].split(',')}
            checks.append(lambda ls, k=key, vs=values, neg=(op == 'notin'): (ls.get(k) in vs) != neg)
        elif m := re.fullmatch(r'([\w./-]+)\s*(==|!=|=)\s*([\w./-]*)', term):
            key, op, value = m[1], m[2], m[3]
            checks.append(lambda ls, k=key, v=value, neg=(op == '!='): (ls.get(k) == v) != neg)
        elif m := re.fullmatch(r'(!?)([\w./-]+)', term):
            checks.append(lambda ls, k=m[2], neg=bool(m[1]): (k in ls) != neg)
        else:
            raise ApiError(400, f'unable to parse requirement: {term!r}')
    return lambda labels: all(check(labels) for check in checks)


def field_matcher(selector):
    """A predicate on an object for `path=value`, `path==value`, `path!=value` (dotted paths)."""
    checks = []
    for term in split_terms(selector or ''):
        m = re.fullmatch(r'([\w.]+)\s*(==|!=|=)\s*(.*)', term)
        if not m:
            raise ApiError(400, f'invalid field selector: {term!r}')

        def value_at(obj, path=m[1]):
            for part in path.split('.'):
                obj = obj.get(part) if isinstance(obj, dict) else None
            return '' if obj is None else str(obj)
        checks.append(lambda obj, get=value_at, v=m[3], neg=(m[2] == '!='): (get(obj) == v) != neg)
    return lambda obj: all(check(obj) for check in checks)


class Emulator(kmock.KubernetesEmulator):
    def __init__(self):
        super().__init__()
        self.store = {}            # (group, plural, namespace, name) -> object
        self.rv = 0                # the global resourceVersion counter
        self.events = []           # every change: (rv, (group, plural), type, old, new)
        self.watchers = set()      # one asyncio.Queue per open watch
        self.exec_rules, self.exec_calls, self.sessions = [], [], {}
        self.logs, self.logs_ended = {}, set()
        self.logs_changed = asyncio.Event()
        self.denied, self.reviews, self.fail_rules = set(), [], []
        self.requests = []         # every API request: {"method", "path"}

    # ---- entry point -------------------------------------------------------------------
    async def __call__(self, raw):
        body = await raw.read()
        try:
            if raw.path.startswith('/_kmock/'):
                return await self.control(raw, body)
            self.requests.append({'method': raw.method, 'path': raw.path})
            await self.inject_failure(raw)
            route = Route.parse(raw.path)
            if route is None:
                return await super().__call__(raw)
            return await self.serve(raw, body, route)
        except ApiError as e:
            return e.response()
        except Exception as e:  # a bug here should reach the test as a readable 500
            return ApiError(500, f'emulator error: {e!r}').response()

    async def inject_failure(self, raw):
        for rule in self.fail_rules:
            if rule.get('method', raw.method).upper() != raw.method:
                continue
            if rule.get('path_contains', '') not in raw.path_qs:
                continue
            if rule.get('times') is not None:
                rule['times'] -= 1
                if rule['times'] <= 0:
                    self.fail_rules.remove(rule)
            if rule.get('delay_ms'):
                await asyncio.sleep(rule['delay_ms'] / 1000)
            if rule.get('status'):
                raise ApiError(rule['status'], rule.get('message', 'injected by /_kmock/fail'), rule.get('reason'))
            return

    async def serve(self, raw, body, r):
        method, q = raw.method, raw.query
        if r.plural == 'selfsubjectaccessreviews' and method == 'POST':
            return aiohttp.web.json_response(self.review(json.loads(body)), status=201)
        if r.plural == 'pods' and r.sub == 'exec':
            return await self.exec(raw, r)
        if r.plural == 'pods' and r.sub == 'log':
            return await self.pod_log(raw, r)
        data = json.loads(body) if body else {}
        if r.name is None:
            if method == 'GET' and q.get('watch') in ('true', '1'):
                return await self.watch(raw, r)
            if method == 'GET':
                return aiohttp.web.json_response(self.list_body(r, self.select(r, q)))
            if method == 'POST':
                return aiohttp.web.json_response(self.create(r, data), status=201)
            if method == 'DELETE':
                deleted = [self.remove(r, obj) for obj in self.select(r, q)]
                return aiohttp.web.json_response(self.list_body(r, deleted))
        elif r.sub in (None, 'status'):
            if method == 'GET':
                return aiohttp.web.json_response(self.existing(r)[1])
            if method == 'PUT':
                return aiohttp.web.json_response(self.replace(r, data))
            if method == 'PATCH':
                return aiohttp.web.json_response(self.patch(r, body, raw.content_type))
            if method == 'DELETE':
                key, obj = self.existing(r)
                check_preconditions(obj, data.get('preconditions') or {})
                return aiohttp.web.json_response(self.remove(r, obj))
        raise ApiError(405, f'{method} {raw.path} is not supported by the emulator')

    # ---- the object store ----------------------------------------------------------------
    def key(self, r, name=None, namespace=None):
        return (r.group, r.plural, namespace if namespace is not None else r.namespace, name or r.name)

    def existing(self, r):
        key = self.key(r)
        if key not in self.store:
            raise ApiError(404, f'{r.what} "{r.name}" not found',
                           details={'name': r.name, 'group': r.group, 'kind': r.plural})
        return key, self.store[key]

    def info(self, r):
        res = kmock.resource(group=r.group, version=r.version, plural=r.plural)
        return self.resources[res] if res in self.resources else kmock.ResourceInfo()

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    def emit(self, r, kind, old, new):
        event = (self.rv, (r.group, r.plural), kind, copy.deepcopy(old), copy.deepcopy(new))
        self.events.append(event)
        for queue in self.watchers:
            queue.put_nowait(event)

    def create(self, r, obj):
        meta = obj.setdefault('metadata', {})
        if not meta.get('name') and meta.get('generateName'):
            meta['name'] = meta['generateName'] + uuid.uuid4().hex[:5]
        if not meta.get('name'):
            raise ApiError(422, 'metadata.name: Required value: name or generateName is required')
        if r.namespace and meta.get('namespace', r.namespace) != r.namespace:
            raise ApiError(400, 'the namespace of the object does not match the namespace of the request')
        key = self.key(r, meta['name'])
        if key in self.store:
            raise ApiError(409, f'{r.what} "{meta["name"]}" already exists', 'AlreadyExists',
                           {'name': meta['name'], 'group': r.group, 'kind': r.plural})
        obj.setdefault('apiVersion', r.api_version)
        obj.setdefault('kind', self.info(r).kind or r.plural.capitalize().rstrip('s'))
        obj.pop('status', None)  # written only through /status, as with a status subresource
        if r.plural == 'namespaces':
            obj['status'] = {'phase': 'Active'}
        for field in ('deletionTimestamp', 'managedFields'):
            meta.pop(field, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1,
                    resourceVersion=self.next_rv())
        if r.namespace:
            meta['namespace'] = r.namespace
        self.store[key] = obj
        self.emit(r, 'ADDED', None, obj)
        return obj

    def replace(self, r, obj):
        key, old = self.existing(r)
        meta = obj.setdefault('metadata', {})
        if meta.get('name', r.name) != r.name:
            raise ApiError(400, 'the name of the object does not match the name in the URL')
        check_preconditions(old, {'resourceVersion': meta.get('resourceVersion')})
        return self.commit(r, key, old, obj)

    def patch(self, r, body, content_type):
        data = json.loads(body)
        key = self.key(r)
        if key not in self.store and content_type == 'application/apply-patch+yaml' and r.sub is None:
            return self.create(r, merge_patch({'metadata': {'name': r.name}}, data))  # SSA upserts
        key, old = self.existing(r)
        if content_type == 'application/json-patch+json':
            patched = jsonpatch.apply_patch(old, data)
        else:
            check_preconditions(old, {'resourceVersion': (data.get('metadata') or {}).get('resourceVersion')})
            patched = merge_patch(old, data)
        return self.commit(r, key, old, patched)

    def commit(self, r, key, old, new):
        """Store a new version: status only via /status, identity fields kept, counters bumped."""
        if r.sub == 'status':
            new = dict(copy.deepcopy(old), status=new.get('status') or {})
        else:
            new = {k: v for k, v in new.items() if k != 'status'}
            if 'status' in old:
                new['status'] = copy.deepcopy(old['status'])
        meta = new.setdefault('metadata', {})
        for field in ('uid', 'creationTimestamp', 'namespace', 'name', 'generation', 'deletionTimestamp'):
            if field in old['metadata']:
                meta[field] = old['metadata'][field]
        strip = lambda o: {k: v for k, v in o.items() if k not in ('metadata', 'status')}
        if strip(new) != strip(old):
            meta['generation'] = old['metadata'].get('generation', 1) + 1
        meta['resourceVersion'] = self.next_rv()
        self.store[key] = new
        self.emit(r, 'MODIFIED', old, new)
        if meta.get('deletionTimestamp') and not meta.get('finalizers'):
            return self.remove(r, new)  # the last finalizer is gone
        return new

    def remove(self, r, obj):
        meta = obj['metadata']
        key = self.key(r, meta['name'], meta.get('namespace'))
        if meta.get('finalizers'):  # only marked; whoever owns the finalizer removes it
            if meta.get('deletionTimestamp'):
                return obj
            marked = copy.deepcopy(obj)
            marked['metadata'].update(deletionTimestamp=now(), resourceVersion=self.next_rv())
            self.store[key] = marked
            self.emit(r, 'MODIFIED', obj, marked)
            return marked
        del self.store[key]
        gone = copy.deepcopy(obj)
        gone['metadata']['resourceVersion'] = self.next_rv()
        self.emit(r, 'DELETED', obj, gone)
        if r.plural == 'namespaces':  # a real cluster does this asynchronously while Terminating
            for (group, plural, ns, name), inner in list(self.store.items()):
                if ns == meta['name']:
                    self.remove(Route(group, '', plural, ns, name, None),
                                dict(inner, metadata=dict(inner['metadata'], finalizers=[])))
        if r.plural == 'pods':  # the container is gone: end log followers and exec sessions
            self.touch_logs()
            for ws in self.sessions.pop((meta.get('namespace'), meta['name']), set()):
                asyncio.ensure_future(ws.close())
        return gone

    def select(self, r, q):
        labels, fields = label_matcher(q.get('labelSelector')), field_matcher(q.get('fieldSelector'))
        return [obj for (group, plural, ns, _), obj in sorted(self.store.items(), key=lambda kv: (kv[0][2] or '', kv[0][3]))
                if (group, plural) == (r.group, r.plural) and (r.namespace is None or ns == r.namespace)
                and labels(obj['metadata'].get('labels') or {}) and fields(obj)]

    def list_body(self, r, items):
        return {'apiVersion': r.api_version, 'kind': (self.info(r).kind or 'Object') + 'List',
                'metadata': {'resourceVersion': str(self.rv)}, 'items': items}

    async def watch(self, raw, r):
        q = raw.query
        labels, fields = label_matcher(q.get('labelSelector')), field_matcher(q.get('fieldSelector'))

        def visible(obj):
            return obj is not None and (r.namespace is None or obj['metadata'].get('namespace') == r.namespace) \
                and labels(obj['metadata'].get('labels') or {}) and fields(obj)

        def translate(event):  # an object moving in or out of the selection is an ADDED or DELETED
            _, res, kind, old, new = event
            if res != (r.group, r.plural):
                return None
            was, now_ = visible(old), visible(new)
            if kind == 'DELETED':
                return {'type': 'DELETED', 'object': new} if was else None
            if now_:
                return {'type': 'MODIFIED' if was else 'ADDED', 'object': new}
            return {'type': 'DELETED', 'object': new} if was else None

        since = q.get('resourceVersion', '')
        if q.get('sendInitialEvents') == 'true' or since in ('', '0'):
            backlog = [{'type': 'ADDED', 'object': obj} for obj in self.select(r, q)]
            if q.get('sendInitialEvents') == 'true':
                backlog.append({'type': 'BOOKMARK', 'object': {
                    'kind': self.info(r).kind, 'apiVersion': r.api_version,
                    'metadata': {'resourceVersion': str(self.rv),
                                 'annotations': {'k8s.io/initial-events-end': 'true'}}}})
        else:
            backlog = [e for e in map(translate, (ev for ev in self.events if ev[0] > int(since))) if e]
        queue = asyncio.Queue()
        self.watchers.add(queue)  # registered before the first await: no event can slip through
        timeout = float(q.get('timeoutSeconds', 0)) or None
        deadline = asyncio.get_running_loop().time() + timeout if timeout else None
        resp = aiohttp.web.StreamResponse(headers={'Content-Type': 'application/json'})
        try:
            await resp.prepare(raw)
            for event in backlog:
                await resp.write(json.dumps(event).encode() + b'\n')
            while True:
                left = None if deadline is None else deadline - asyncio.get_running_loop().time()
                if left is not None and left <= 0:
                    break
                try:
                    event = translate(await asyncio.wait_for(queue.get(), left))
                except asyncio.TimeoutError:
                    break
                if event:
                    await resp.write(json.dumps(event).encode() + b'\n')
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away
        finally:
            self.watchers.discard(queue)
        return resp

    # ---- pods: exec and log ----------------------------------------------------------------
    def pod_and_container(self, r, container):
        _, pod = self.existing(Route('', 'v1', 'pods', r.namespace, r.name, None))
        names = [c.get('name') for c in (pod.get('spec') or {}).get('containers') or []]
        if container and names and container not in names:
            raise ApiError(400, f'container {container} is not valid for pod {r.name}')
        return container or (names[0] if names else '')

    async def exec(self, raw, r):
        q = raw.query
        argv = q.getall('command', [])
        container = self.pod_and_container(r, q.get('container'))
        tty, stdin = q.get('tty') == 'true', q.get('stdin') == 'true'
        call = {'pod': r.name, 'namespace': r.namespace, 'container': container, 'argv': argv,
                'tty': tty, 'stdin': stdin, 'resizes': []}
        self.exec_calls.append(call)
        joined = ' '.join(argv)
        rule = next((rule for rule in self.exec_rules if rule.get('contains', '') in joined
                     and rule.get('pod', r.name) == r.name), None)
        # kube 5 offers v5 then v4; aiohttp picks the first of the client's list that we accept.
        ws = aiohttp.web.WebSocketResponse(protocols=('v5.channel.k8s.io', 'v4.channel.k8s.io'))
        await ws.prepare(raw)
        session_key = (r.namespace, r.name)
        self.sessions.setdefault(session_key, set()).add(ws)
        try:
            if rule and rule.get('read_stdin') and stdin:  # take stdin whole, then answer
                received = bytearray()
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
                            break
                        continue
                    channel, data = msg.data[0], msg.data[1:]
                    if channel == 0:
                        received += data
                    elif channel == 255 and data[:1] == b'\x00':
                        break
                call['stdin_text'] = received.decode('utf-8', 'replace')
            if rule or not stdin:  # a non-interactive answer: output, exit status, close
                out = rule.get('stdout', '') if rule else joined + '\n'
                if out:
                    await ws.send_bytes(b'\x01' + out.encode())
                if rule and rule.get('stderr'):
                    await ws.send_bytes(b'\x02' + rule['stderr'].encode())
                await ws.send_bytes(b'\x03' + json.dumps(exit_status(rule.get('exit', 0) if rule else 0)).encode())
                return ws
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                    continue
                channel, data = msg.data[0], msg.data[1:]
                if channel == 0:  # stdin: echo it; Ctrl-D ends the "shell"
                    if data:
                        await ws.send_bytes(b'\x01' + data)
                    if b'\x04' in data:
                        break
                elif channel == 4:  # resize, as {"Width":W,"Height":H}
                    size = json.loads(data)
                    call['resizes'].append({'width': size.get('Width'), 'height': size.get('Height')})
                    await ws.send_bytes(b'\x01' + f'\r\n[resize {size.get("Width")}x{size.get("Height")}]\r\n'.encode())
                elif channel == 255 and data[:1] == b'\x00':  # v5: the client closed stdin
                    break
            if not ws.closed:
                await ws.send_bytes(b'\x03' + json.dumps(exit_status(0)).encode())
            return ws
        finally:
            self.sessions.get(session_key, set()).discard(ws)
            await ws.close()

    def touch_logs(self):
        """Wake every log follower (they re-check their pod and text)."""
        changed, self.logs_changed = self.logs_changed, asyncio.Event()
        changed.set()

    async def pod_log(self, raw, r):
        q = raw.query
        self.pod_and_container(r, q.get('container'))
        key = (r.namespace, r.name)
        text = self.logs.get(key, '')
        if q.get('tailLines'):
            lines = text.splitlines(keepends=True)
            text = ''.join(lines[-int(q['tailLines']):]) if int(q['tailLines']) > 0 else ''
        if q.get('follow') != 'true':
            return aiohttp.web.Response(text=text, content_type='text/plain')
        resp = aiohttp.web.StreamResponse(headers={'Content-Type': 'text/plain'})
        await resp.prepare(raw)
        sent = len(self.logs.get(key, ''))
        try:
            await resp.write(text.encode())
            while True:
                changed = self.logs_changed  # taken before looking, so no wake-up is missed
                full = self.logs.get(key, '')
                if len(full) > sent:
                    await resp.write(full[sent:].encode())
                sent = len(full)
                if key in self.logs_ended or self.key(Route('', 'v1', 'pods', *key, None)) not in self.store:
                    break
                await changed.wait()
            await resp.write_eof()
        except ConnectionError:
            pass
        return resp

    # ---- access reviews and the control endpoints -------------------------------------------
    def review(self, body):
        attrs = (body.get('spec') or {}).get('resourceAttributes') or {}
        namespace = attrs.get('namespace', '')
        status = {'allowed': namespace not in self.denied}
        if not status['allowed']:
            status['reason'] = f'denied by the emulator: namespace "{namespace}" is on the /_kmock/deny list'
        self.reviews.append(dict(attrs, allowed=status['allowed']))
        return {'apiVersion': 'authorization.k8s.io/v1', 'kind': 'SelfSubjectAccessReview',
                'metadata': {}, 'spec': body.get('spec') or {}, 'status': status}

    async def control(self, raw, body):
        method, parts = raw.method, raw.path.strip('/').split('/')[1:]
        data = json.loads(body) if body and parts[:1] != ['logs'] else None
        ok = aiohttp.web.json_response({'ok': True})
        match method, parts:
            case 'GET', ['objects']:
                return aiohttp.web.json_response([obj for _, obj in sorted(self.store.items(), key=lambda kv: str(kv[0]))])
            case 'PUT', ['exec']:
                self.exec_rules = list(data or [])
                return ok
            case 'GET', ['exec', 'calls']:
                return aiohttp.web.json_response(self.exec_calls)
            case ('PUT' | 'POST'), ['logs', namespace, pod]:
                text = body.decode()
                if method == 'PUT':
                    self.logs_ended.discard((namespace, pod))
                self.logs[(namespace, pod)] = (self.logs.get((namespace, pod), '') if method == 'POST' else '') + text
                self.touch_logs()
                return ok
            case 'POST', ['logs', namespace, pod, 'end']:
                self.logs_ended.add((namespace, pod))
                self.touch_logs()
                return ok
            case 'PUT', ['deny']:
                self.denied = set((data or {}).get('namespaces') or [])
                return ok
            case 'GET', ['requests']:
                return aiohttp.web.json_response(self.requests)
            case 'GET', ['reviews']:
                return aiohttp.web.json_response(self.reviews)
            case 'PUT', ['fail']:
                self.fail_rules = list(data or [])
                return ok
            case 'GET', ['fail']:
                return aiohttp.web.json_response(self.fail_rules)
        raise ApiError(404, f'unknown control endpoint {method} {raw.path}')


def check_preconditions(obj, preconditions):
    meta = obj['metadata']
    for field in ('resourceVersion', 'uid'):
        wanted = preconditions.get(field)
        if wanted and wanted != meta.get(field):
            raise ApiError(409, f'Operation cannot be fulfilled on {obj.get("kind", "object")} "{meta["name"]}": '
                                'the object has been modified; please apply your changes to the latest version and try again',
                           'Conflict', {'name': meta['name']})


def exit_status(code):
    """What kubelet reports on the exec error channel (3) when the command ends."""
    if not code:
        return {'metadata': {}, 'status': 'Success'}
    return {'metadata': {}, 'status': 'Failure', 'reason': 'NonZeroExitCode',
            'message': f'command terminated with non-zero exit code: exit status {code}',
            'details': {'causes': [{'reason': 'ExitCode', 'message': str(code)}]}}


async def main():
    emu = Emulator()
    emu.resources.load_bundled()
    emu.resources['apps.kubeblocks.io/v1alpha1/clusters'] = kmock.ResourceInfo(
        kind='Cluster', singular='cluster', namespaced=True, subresources={'status'},
        verbs={'get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'})
    async with emu, kmock.Server(emu, host='127.0.0.1', port=0) as server:
        print(f'READY http://{server.host}:{server.port}', flush=True)
        if '--forever' in sys.argv:
            await asyncio.Event().wait()
        # Blocks a thread until stdin reaches EOF, i.e. until the test process is gone.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)


if __name__ == '__main__':
    asyncio.run(main())
