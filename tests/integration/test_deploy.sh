#!/usr/bin/env bash
# deploy/: the compose file and the Kubernetes manifests, offline.
# - compose: `docker-compose config` accepts it; every service has a
#   healthcheck, every depends_on waits for service_healthy, volumes are
#   named, the dispatcher has nothing fixed per replica (container_name,
#   published port, a control socket of a fixed name); no daemon link is
#   plain tcp:// (the daemons share ipc:// sockets on the volume
#   ipc-sockets, which every service using them mounts and no other
#   does), and `walhook
#   check` accepts every walhook service's environment (with the compose
#   walhook.conf, which holds no secret: it is mounted readable by all; a
#   dispatcher's control from its command); the host-network
#   variant (docker-compose.host.yml) merged onto it: every service on the
#   host's network with loopback listeners only, no published port, each
#   dispatcher replica with a private control socket and a random lease
#   owner id. (The
#   real run, up and healthy, --scale dispatcher=3, is deploy/compose/smoke.sh:
#   it needs a Docker daemon, so it is not part of CI.)
# - k8s: every object passes the Kubernetes API schema (npm kubernetes-models,
#   installed into build/npm-k8s on first use; the schema step is skipped with
#   a message when npm cannot install it), and walhook's own rules: a pinned
#   image tag, probes, resources and the hardened securityContext on every
#   container, the store a StatefulSet with volumeClaimTemplates behind a
#   headless Service, ingestors with one replica and Recreate, a PDB for the
#   dispatcher, NetworkPolicies, tls+tcp:// links, every resource in the
#   kustomization.
set -uo pipefail
source "$(dirname "$0")/../lib/helpers.sh"
trap wh_cleanup EXIT
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
command -v python3 >/dev/null || wh_fail "python3 missing"
wh_tmpdir

COMPOSE="$ROOT/deploy/compose"
variants="bridge"
if command -v docker-compose >/dev/null; then
    docker-compose -f "$COMPOSE/docker-compose.yml" config >"$WH_TMP/compose-bridge.yml" ||
        wh_fail "docker-compose config refused the compose file"
    docker-compose -f "$COMPOSE/docker-compose.yml" -f "$COMPOSE/docker-compose.host.yml" \
        config >"$WH_TMP/compose-host.yml" ||
        wh_fail "docker-compose config refused the host-network variant (docker-compose.host.yml)"
    variants="bridge host"
else
    wh_log "docker-compose missing: checking the raw file (the host variant needs the merge: skipped)"
    cp "$COMPOSE/docker-compose.yml" "$WH_TMP/compose-bridge.yml"
fi
[ -x "$BIN/walhook" ] || wh_fail "no $BIN/walhook (make all)"
for variant in $variants; do
python3 - "$WH_TMP/compose-$variant.yml" "$variant" "$BIN/walhook" "$COMPOSE/walhook.conf" "$WH_TMP" <<'PY' || wh_fail "compose rules ($variant)"
import os, re, subprocess, sys, tempfile, yaml
doc = yaml.safe_load(open(sys.argv[1]))
host = sys.argv[2] == "host"
walhook, conf, tmp = sys.argv[3], sys.argv[4], sys.argv[5]
bad = []
def expand(v):
    # ${VAR:-default} as docker-compose would with VAR unset (the raw file);
    # "$$" is a literal "$"
    v = re.sub(r"\$\{[A-Za-z_0-9]+:-([^}]*)\}", r"\1", str(v))
    return v.replace("$$", "$")
def assigned(cmd, var):
    # VAR=VALUE in a `sh -c` command line, with $(cat /etc/hostname) as a
    # replica's hostname
    line = expand(" ".join(cmd if isinstance(cmd, list) else [cmd]))
    m = re.search(var + r"=(\S+)", line.replace("$(cat /etc/hostname)", "c0ffee123456"))
    return m.group(1) if m else None
# a service left to a profile is not started by a plain `up`
svcs = {n: s for n, s in doc["services"].items() if not s.get("profiles")}
for name, s in svcs.items():
    if "healthcheck" not in s or not s["healthcheck"].get("test"):
        bad.append(f"{name}: no healthcheck")
    test = " ".join(s.get("healthcheck", {}).get("test", []))
    if name not in ("postgres",) and "walhook health" not in test:
        bad.append(f"{name}: healthcheck is not `walhook health` ({test})")
    if "curl" in test:
        bad.append(f"{name}: healthcheck uses curl")
    deps = s.get("depends_on", {})
    if isinstance(deps, list):
        bad.append(f"{name}: depends_on without conditions")
    else:
        for d, c in deps.items():
            if c.get("condition") != "service_healthy":
                bad.append(f"{name}: depends_on {d} is {c.get('condition')}, not service_healthy")
    for v in s.get("volumes", []):
        src = v.get("source") if isinstance(v, dict) else v.split(":")[0]
        typ = v.get("type") if isinstance(v, dict) else ("bind" if src.startswith((".", "/")) else "volume")
        if typ == "volume" and src not in (doc.get("volumes") or {}):
            bad.append(f"{name}: volume {src} is not a named volume")
    if "admin" in name and "walhook health --daemon admin" not in test:
        bad.append(f"{name}: not probed as the admin")
    # the source DSN (a password) only where it is used: the store seeds
    # the runtime state from it, the ingestor connects
    env = s.get("environment") or {}
    has_dsn = any(k == "WALHOOK_SOURCE_DSN" or str(k).startswith("WALHOOK_SOURCE_DSN=")
                  for k in (env if isinstance(env, list) else env.keys()))
    if has_dsn and name not in ("store", "ingestor"):
        bad.append(f"{name}: gets WALHOOK_SOURCE_DSN, which it never uses")
    if not has_dsn and name in ("store", "ingestor"):
        bad.append(f"{name}: has no WALHOOK_SOURCE_DSN")
    if host:
        # host networking: nothing on a bridge, every listener on the loopback
        if s.get("network_mode") != "host" or s.get("networks"):
            bad.append(f"{name}: not network_mode host")
        if s.get("ports"):
            bad.append(f"{name}: publishes ports (host networking refuses them)")
        for k, v in (s.get("environment") or {}).items():
            v = str(v)
            if k.endswith(("_ENDPOINT", "_CONTROL", "_LISTEN", "_DSN")) and "0.0.0.0" in v:
                bad.append(f"{name}: {k}={v} listens beyond the loopback")
            if k.endswith(("_ENDPOINT", "_CONTROL", "_LISTEN")) and not (
                    v.startswith(("127.0.0.1:", "ipc:///var/lib/walhook/", "ipc:///run/walhook/"))):
                bad.append(f"{name}: {k}={v} is neither on 127.0.0.1 nor a private socket")
    # no daemon link in plain tcp:// (no authentication: whoever connects
    # to the store reads every secret and rewrites the runtime state); the
    # sockets' volume where a service uses it
    env = {k: expand(v) for k, v in (s.get("environment") or {}).items()}
    ctl = assigned(s.get("command") or [], "WALHOOK_DISPATCHER_CONTROL")
    if ctl:
        env["WALHOOK_DISPATCHER_CONTROL"] = ctl
    for k, v in env.items():
        if k.endswith(("_ENDPOINT", "_CONTROL", "_ADVERTISE")) and v.startswith("tcp://"):
            bad.append(f"{name}: {k}={v} is plain tcp:// (use ipc:// on the volume ipc-sockets)")
        if k.endswith(("_ENDPOINT", "_CONTROL")) and v.startswith("ipc:///run/walhook/"):
            mounts = [(v.get("source"), v.get("target")) if isinstance(v, dict) else tuple(v.split(":")[:2])
                      for v in s.get("volumes", [])]
            if ("ipc-sockets", "/run/walhook") not in mounts:
                bad.append(f"{name}: {k}={env[k]} without the volume ipc-sockets at /run/walhook")
    # the sockets only for the daemons that use them: whoever can connect to
    # the store reads every secret of the runtime state
    if name not in ("store", "ingestor", "dispatcher", "admin", "admin-host") and any(
            (v.get("source") if isinstance(v, dict) else v.split(":")[0]) == "ipc-sockets"
            for v in s.get("volumes", [])):
        bad.append(f"{name}: mounts the daemons' sockets (ipc-sockets), which it does not use")
    # the daemons' own check of that environment and the compose file's
    # configuration (data_dir: a directory of this test)
    cmd0 = " ".join(s.get("command") or [])
    if "walhook-" in cmd0 and "walhook-receiver" not in cmd0:
        d = tempfile.mkdtemp(dir=tmp)
        run_env = {k: v for k, v in env.items() if k.startswith("WALHOOK_")}
        run_env.update(PATH=os.environ.get("PATH", "/usr/bin:/bin"), WALHOOK_DATA_DIR=d)
        r = subprocess.run([walhook, "check", "-c", conf], env=run_env, capture_output=True,
                           text=True)
        if r.returncode != 0:
            bad.append(f"{name}: walhook check refuses its environment: {r.stderr.strip()}")
        elif "holds secrets" in r.stdout + r.stderr:
            # the file is bind-mounted as it is in the checkout (readable by
            # all): secrets go by environment to the daemons that use them
            bad.append(f"{name}: walhook check warns: {r.stderr.strip()}")
if not any("admin" in n for n in svcs):
    bad.append("no admin service is started")
d = svcs["dispatcher"]
if "container_name" in d or d.get("ports"):
    bad.append("dispatcher: fixed container_name or published port (cannot --scale)")
env = d.get("environment", {})
ctl = env.get("WALHOOK_DISPATCHER_CONTROL", "")
if host:
    # replicas share the host's network and hostname: the control endpoint
    # is a socket in the replica's own tmpfs, the lease owner id random
    if not ctl.startswith("ipc:///var/lib/walhook/"):
        bad.append(f"dispatcher: control endpoint {ctl!r} is not a socket of the replica's own")
    if not any(str(t).startswith("/var/lib/walhook") for t in d.get("tmpfs", [])):
        bad.append("dispatcher: /var/lib/walhook is not a private tmpfs")
    if "WALHOOK_DISPATCHER_ID=" not in " ".join(d.get("command", [])) or "random" not in " ".join(d.get("command", [])):
        bad.append("dispatcher: no per-replica lease owner id (hostname-pid is the same in every replica)")
else:
    # each replica's control socket is named after its hostname, in its
    # command and in its healthcheck alike (the admin reaches it there)
    run = assigned(d.get("command") or [], "WALHOOK_DISPATCHER_CONTROL")
    probe = assigned(d.get("healthcheck", {}).get("test", []), "WALHOOK_DISPATCHER_CONTROL")
    if not run or "c0ffee123456" not in run or not run.startswith("ipc:///run/walhook/"):
        bad.append(f"dispatcher: control endpoint {run!r} is not a per-replica socket on the "
                   "shared volume (named after the hostname)")
    if probe != run:
        bad.append(f"dispatcher: the healthcheck probes {probe!r}, the replica listens on {run!r}")
for v in d.get("volumes", []):
    tgt = v.get("target") if isinstance(v, dict) else v.split(":")[1]
    if tgt == "/var/lib/walhook":
        bad.append("dispatcher: shares a data volume (its socket and pid file would collide)")
for b in bad:
    print("compose:", b)
sys.exit(1 if bad else 0)
PY
done
bash -n "$COMPOSE/smoke.sh" || wh_fail "deploy/compose/smoke.sh does not parse"

K8S="$ROOT/deploy/k8s"
python3 - "$K8S" <<'PY' || wh_fail "k8s rules"
import sys, os, yaml, re
d = sys.argv[1]
kust = yaml.safe_load(open(os.path.join(d, "kustomization.yaml")))
files = sorted(f for f in os.listdir(d) if f.endswith(".yaml") and f != "kustomization.yaml")
bad = []
if sorted(kust["resources"]) != files:
    bad.append(f"kustomization resources {kust['resources']} != files {files}")
objs = [o for f in files for o in yaml.safe_load_all(open(os.path.join(d, f))) if o]
by = {}
for o in objs:
    by.setdefault(o["kind"], []).append(o)
def pod_of(o):
    return o["spec"]["template"]["spec"]
for o in by.get("Deployment", []) + by.get("StatefulSet", []):
    n = o["metadata"]["name"]
    ps = pod_of(o)
    psc = ps.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True or not isinstance(psc.get("runAsUser"), int) or psc.get("runAsUser") == 0:
        bad.append(f"{n}: pod securityContext needs runAsNonRoot and a numeric non-root runAsUser")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        bad.append(f"{n}: seccompProfile is not RuntimeDefault")
    for c in ps["containers"]:
        cn = f"{n}/{c['name']}"
        img = c["image"]
        if ":" not in img or img.endswith(":latest"):
            bad.append(f"{cn}: image {img} has no pinned tag")
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True:
            bad.append(f"{cn}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{cn}: allowPrivilegeEscalation is not false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            bad.append(f"{cn}: capabilities are not drop [ALL]")
        for p in ("livenessProbe", "readinessProbe"):
            if p not in c:
                bad.append(f"{cn}: no {p}")
        # walhook's containers are probed with `walhook health` (an httpGet
        # of the admin's /livez gets 401 when admin.open_probes is false)
        if c.get("command", [""])[0].startswith("walhook-"):
            for p in ("startupProbe", "livenessProbe", "readinessProbe"):
                if p in c and c[p].get("exec", {}).get("command", [""])[:2] != ["walhook", "health"]:
                    bad.append(f"{cn}: {p} is not `walhook health`")
        # the Secret with the source DSN only where it is used (the store
        # seeds the runtime state from it, the ingestor connects)
        srcs = [e.get("secretRef", {}).get("name") for e in c.get("envFrom", [])]
        uses = c.get("command", [""])[0] in ("walhook-store", "walhook-ingestor")
        if ("walhook-source" in srcs) != uses:
            bad.append(f"{cn}: the walhook-source Secret {'missing' if uses else 'given, never used'}")
        r = c.get("resources", {})
        if not r.get("requests") or not r.get("limits", {}).get("memory"):
            bad.append(f"{cn}: resources need requests and a memory limit")
        for e in c.get("env", []):
            if e["name"].endswith(("_ENDPOINT", "_CONTROL")) and not e.get("value", "").startswith("tls+tcp://"):
                bad.append(f"{cn}: {e['name']} is not tls+tcp://")
cm = {o["metadata"]["name"]: o for o in by.get("ConfigMap", [])}.get("walhook-config", {}).get("data", {})
for k in ("WALHOOK_STORE_ENDPOINT", "WALHOOK_INGESTOR_CONTROL", "WALHOOK_DISPATCHER_CONTROL"):
    if not cm.get(k, "").startswith("tls+tcp://"):
        bad.append(f"walhook-config: {k} is not tls+tcp://")
for k in ("WALHOOK_IPC_TLS_CERT", "WALHOOK_IPC_TLS_KEY", "WALHOOK_IPC_TLS_CA"):
    if not cm.get(k):
        bad.append(f"walhook-config: {k} missing")
sts = [o for o in by.get("StatefulSet", []) if o["metadata"]["name"] == "walhook-store"]
if not sts or not sts[0]["spec"].get("volumeClaimTemplates"):
    bad.append("the store is not a StatefulSet with volumeClaimTemplates")
else:
    svc = [s for s in by.get("Service", []) if s["metadata"]["name"] == sts[0]["spec"]["serviceName"]]
    if not svc or svc[0]["spec"].get("clusterIP") != "None":
        bad.append("the store's serviceName is not a headless Service")
for o in by.get("Deployment", []):
    n = o["metadata"]["name"]
    if n.startswith("walhook-ingestor"):
        if o["spec"].get("replicas") != 1 or o["spec"].get("strategy", {}).get("type") != "Recreate":
            bad.append(f"{n}: an ingestor needs replicas 1 and strategy Recreate")
disp = [o for o in by.get("Deployment", []) if o["metadata"]["name"] == "walhook-dispatcher"]
if not disp:
    bad.append("no dispatcher Deployment")
pdbs = [p["spec"]["selector"]["matchLabels"] for p in by.get("PodDisruptionBudget", [])]
if disp and disp[0]["spec"]["selector"]["matchLabels"] not in pdbs:
    bad.append("no PodDisruptionBudget for the dispatcher")
if not any(s["metadata"]["name"] == "walhook-admin" for s in by.get("Service", [])):
    bad.append("no Service for the admin")
nps = by.get("NetworkPolicy", [])
store_np = [p for p in nps if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component") == "store"]
if not store_np:
    bad.append("no NetworkPolicy for the store")
admin_np = [p for p in nps if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component") == "admin"]
if not admin_np or not admin_np[0]["spec"].get("ingress"):
    bad.append("no NetworkPolicy restricting the admin")
# targets named in the config must be defined (a Service of that name)
for t in cm.get("WALHOOK_TARGETS", "").split(","):
    m = re.match(r"(?:[^=]+=)?https?://([^:/]+)", t.strip())
    if m and "." not in m.group(1) and not any(s["metadata"]["name"] == m.group(1) for s in by.get("Service", [])):
        bad.append(f"target host {m.group(1)} has no Service")
for b in bad:
    print("k8s:", b)
print(f"k8s: {len(objs)} objects, {len(bad)} problems")
sys.exit(1 if bad else 0)
PY

# the Kubernetes API schema, offline once the models are installed
NPMDIR="${WH_NPM_K8S:-$ROOT/build/npm-k8s}"
if [ ! -d "$NPMDIR/node_modules/kubernetes-models" ]; then
    if command -v npm >/dev/null && mkdir -p "$NPMDIR" &&
        timeout 300 npm install --no-audit --no-fund --prefix "$NPMDIR" kubernetes-models@5 js-yaml@4 \
            >"$WH_TMP/npm.log" 2>&1; then
        :
    else
        tail -n 5 "$WH_TMP/npm.log" 2>/dev/null >&2
        echo "SKIP schema check: cannot install the npm package kubernetes-models (no npm or no registry)" >&2
        wh_pass "compose and k8s rules checked; Kubernetes schema check SKIPPED (npm install failed)"
    fi
fi
node "$ROOT/tests/lib/k8s_validate.mjs" "$NPMDIR" "$K8S"/*.yaml >"$WH_TMP/schema.out" 2>&1 ||
    { cat "$WH_TMP/schema.out" >&2; wh_fail "a manifest does not match the Kubernetes API schema"; }
wh_pass "compose rules ($variants); k8s rules; $(tail -n 1 "$WH_TMP/schema.out") against the Kubernetes schema"
