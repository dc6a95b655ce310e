//! The Kubernetes manifests in `deploy/kubernetes` (docs/deploy.md),
//! checked offline:
//!
//! - schema: `kubernetes-validate --strict` (PyPI; the JSON schemas ship
//!   inside it) for every Kubernetes version docs/deploy.md says is
//!   supported, every document passed and none unknown;
//! - what users rely on, read from the YAML: the agent's ClusterRole grants
//!   exactly the API calls the agent's code makes (and the code is scanned
//!   so a new call cannot slip in unnoticed); every hostPath mount of the
//!   agent is read-only but the spool; it tolerates every taint; every
//!   container has requests and limits; the node name comes from the
//!   downward API into the variable the agent reads; the TLS and token
//!   files sit in mounted Secrets; ports, Services, the agent's collector
//!   URL and the NetworkPolicies agree with each other;
//! - the arguments and `UPID_*` variables given to `upid-agent` and
//!   `upid-collector` are ones the real binaries accept, from their
//!   `--help` (a workspace build puts them beside `upid`; `UPID_BIN_DIR`
//!   points elsewhere);
//! - the checks themselves catch broken manifests (mutated copies).
//!
//! Without `kubernetes-validate` or the two binaries, those tests fail
//! under `CI=true` (`.ci/run` installs and builds them) and skip loudly
//! elsewhere. `kubectl kustomize` also renders both kustomizations when a
//! kubectl of 1.21 or later is on PATH (no registry CI reaches ships one,
//! so its absence is a loud skip even in CI).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::{Value, json};

/// The Kubernetes versions docs/deploy.md says are supported, each
/// validated against its schema. 1.31 is the first with
/// `recursiveReadOnly` mounts on by default (the agent's host mounts).
const SUPPORTED_KUBERNETES: [&str; 7] = [
    "1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0",
];

/// Where everything is deployed (deploy/kubernetes/base/kustomization.yaml).
const NAMESPACE: &str = "upid";

/// The variable `upid-agent` reads its node name from: `--node-name`,
/// `env = "UPID_NODE_NAME"` in agent/src/cli.rs.
const NODE_NAME_ENV: &str = "UPID_NODE_NAME";

/// Every Kubernetes API call of the agent, as (Rust type, API group,
/// resource, verbs): agent/src/inventory/kube.rs watches its node's pods
/// (`watcher` on `Api<Pod>`: list and watch) and reads its own Node
/// (`Api<Node>::get_opt`); agent/src/inventory/kube/owners.rs reads pod
/// owners (`Api<ReplicaSet>::get`, `Api<Job>::get`).
const AGENT_API_CALLS: [(&str, &str, &str, &[&str]); 4] = [
    ("Pod", "", "pods", &["list", "watch"]),
    ("Node", "", "nodes", &["get"]),
    ("ReplicaSet", "apps", "replicasets", &["get"]),
    ("Job", "batch", "jobs", &["get"]),
];

/// The agent's resident-memory goal (bench/RESULTS.md): its memory request
/// may not be below it.
const AGENT_RSS_GOAL_BYTES: u64 = 16 * 1024 * 1024;

/// The only capability the agent keeps (network namespaces of other
/// users' processes, see deploy/kubernetes/base/agent-daemonset.yaml).
const AGENT_CAPABILITIES: [&str; 1] = ["SYS_PTRACE"];

const AGENT: &str = "upid-agent";
const COLLECTOR: &str = "upid-collector";
const HEADLESS: &str = "upid-collector-headless";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn k8s_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A tool or binary the test needs is missing: fails under CI=true,
/// says so loudly and skips elsewhere.
fn unavailable(test: &str, what: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {what}; CI (.ci/run) must provide it");
    }
    eprintln!("\n!!! SKIPPED {test}: {what}. CI (.ci/run) provides it.\n");
}

/// Every YAML document in `text` (empty ones dropped).
fn yaml_docs(text: &str, origin: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{origin}: bad YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn kustomization(dir: &Path) -> Value {
    let path = dir.join("kustomization.yaml");
    let mut docs = yaml_docs(&read(&path), &path.display().to_string());
    assert_eq!(docs.len(), 1, "{}: one document", path.display());
    docs.remove(0)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The manifest files of the base, as its kustomization lists them.
fn base_files() -> Vec<PathBuf> {
    let base = k8s_dir().join("base");
    strings(&kustomization(&base)["resources"])
        .iter()
        .map(|r| base.join(r))
        .collect()
}

/// Every document of the base manifests.
fn base_docs() -> Vec<Value> {
    base_files()
        .iter()
        .flat_map(|f| yaml_docs(&read(f), &f.display().to_string()))
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `--name=value` arguments of a container (`--name` alone maps to "").
fn flag_values(container: &Value) -> BTreeMap<String, String> {
    arr(&container["args"])
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (a.to_string(), String::new()),
        })
        .collect()
}

fn env_entry<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    arr(&container["env"]).iter().find(|e| e["name"] == name)
}

/// True when `selector` (a `matchLabels` map) selects `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .map(|m| m.iter().all(|(k, v)| labels[k] == *v))
        .unwrap_or(true)
}

/// Parses a CPU quantity into millicores.
fn cpu_millicores(q: &str) -> Option<u64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<f64>().ok().map(|c| (c * 1000.0).round() as u64),
    }
}

/// Parses a memory quantity (binary suffixes, or plain bytes) into bytes.
fn memory_bytes(q: &str) -> Option<u64> {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
    ];
    for (suffix, factor) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().ok().map(|n| n * factor);
        }
    }
    q.parse().ok()
}

/// The pod specs of the workloads, by workload name.
fn pod_specs(docs: &[Value]) -> Vec<(String, &Value)> {
    docs.iter()
        .filter(|d| {
            [
                "DaemonSet",
                "StatefulSet",
                "Deployment",
                "Job",
                "CronJob",
                "Pod",
            ]
            .contains(&str_of(&d["kind"]))
        })
        .map(|d| {
            let spec = match str_of(&d["kind"]) {
                "Pod" => &d["spec"],
                "CronJob" => &d["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                _ => &d["spec"]["template"]["spec"],
            };
            (
                format!("{}/{}", str_of(&d["kind"]), str_of(&d["metadata"]["name"])),
                spec,
            )
        })
        .collect()
}

fn all_containers(spec: &Value) -> impl Iterator<Item = &Value> {
    arr(&spec["initContainers"])
        .iter()
        .chain(arr(&spec["containers"]))
}

/// Where `path` is mounted from in `container`: the mount whose
/// `mountPath` is `path` or a parent of it.
fn mount_of<'a>(container: &'a Value, path: &str) -> Option<&'a Value> {
    arr(&container["volumeMounts"]).iter().find(|m| {
        let mp = str_of(&m["mountPath"]).trim_end_matches('/');
        !mp.is_empty() && (path == mp || path.starts_with(&format!("{mp}/")))
    })
}

fn volume<'a>(spec: &'a Value, name: &str) -> Option<&'a Value> {
    arr(&spec["volumes"]).iter().find(|v| v["name"] == name)
}

/// The Secret a file given to a flag comes from, and its key: the flag's
/// path must lie in a mounted Secret volume.
fn secret_file(spec: &Value, container: &Value, path: &str) -> Option<(String, String)> {
    let m = mount_of(container, path)?;
    let v = volume(spec, str_of(&m["name"]))?;
    let secret = v["secret"]["secretName"].as_str()?;
    let key = path
        .strip_prefix(str_of(&m["mountPath"]).trim_end_matches('/'))?
        .trim_start_matches('/');
    Some((secret.to_string(), key.to_string()))
}

/// The port of an `IP:PORT` listen address.
fn listen_port(addr: &str) -> Option<u64> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

fn container_port(container: &Value, name: &str) -> Option<u64> {
    arr(&container["ports"])
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
}

/// Everything wrong with `docs` (the base manifests, or a kustomization
/// rendered from them): empty when they keep what users rely on.
fn problems(docs: &[Value]) -> Vec<String> {
    let mut p = Vec::new();
    let required = [
        ("Namespace", NAMESPACE),
        ("ServiceAccount", AGENT),
        ("ClusterRole", AGENT),
        ("ClusterRoleBinding", AGENT),
        ("DaemonSet", AGENT),
        ("ServiceAccount", COLLECTOR),
        ("StatefulSet", COLLECTOR),
        ("Service", COLLECTOR),
        ("Service", HEADLESS),
        ("NetworkPolicy", "default-deny-ingress"),
        ("NetworkPolicy", COLLECTOR),
    ];
    for (kind, name) in required {
        if find(docs, kind, name).is_none() {
            p.push(format!("{kind}/{name} is missing"));
        }
    }
    if !p.is_empty() {
        return p;
    }
    rbac_problems(docs, &mut p);
    workload_problems(docs, &mut p);
    agent_problems(docs, &mut p);
    collector_problems(docs, &mut p);
    network_policy_problems(docs, &mut p);
    p
}

fn rbac_problems(docs: &[Value], p: &mut Vec<String>) {
    for d in docs {
        let kind = str_of(&d["kind"]);
        let name = str_of(&d["metadata"]["name"]);
        if (kind == "Role" || kind == "ClusterRole") && name != AGENT {
            p.push(format!("{kind}/{name}: only the agent has a role"));
        }
        if (kind == "RoleBinding" || kind == "ClusterRoleBinding") && name != AGENT {
            p.push(format!("{kind}/{name}: only the agent's role is bound"));
        }
    }
    let role = find(docs, "ClusterRole", AGENT).unwrap_or(&Value::Null);
    let write_verbs = [
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
        "escalate",
        "bind",
        "impersonate",
    ];
    let mut granted = BTreeSet::new();
    for rule in arr(&role["rules"]) {
        if !rule["nonResourceURLs"].is_null() || !rule["resourceNames"].is_null() {
            p.push(format!("ClusterRole/{AGENT}: unexpected rule {rule}"));
        }
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    if [&group, &resource, &verb].iter().any(|s| s.contains('*')) {
                        p.push(format!(
                            "ClusterRole/{AGENT}: wildcard in {group:?}/{resource}/{verb}"
                        ));
                    }
                    if write_verbs.contains(&verb.as_str()) {
                        p.push(format!(
                            "ClusterRole/{AGENT}: write verb {verb} on {resource}"
                        ));
                    }
                    granted.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    let needed: BTreeSet<_> = AGENT_API_CALLS
        .iter()
        .flat_map(|(_, g, r, verbs)| {
            verbs
                .iter()
                .map(|v| (g.to_string(), r.to_string(), v.to_string()))
        })
        .collect();
    for extra in granted.difference(&needed) {
        p.push(format!(
            "ClusterRole/{AGENT} grants {extra:?}, which the agent never calls"
        ));
    }
    for missing in needed.difference(&granted) {
        p.push(format!(
            "ClusterRole/{AGENT} lacks {missing:?}, which the agent calls"
        ));
    }
    let binding = find(docs, "ClusterRoleBinding", AGENT).unwrap_or(&Value::Null);
    if binding["roleRef"]
        != json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": AGENT})
    {
        p.push(format!(
            "ClusterRoleBinding/{AGENT}: roleRef {}",
            binding["roleRef"]
        ));
    }
    if binding["subjects"]
        != json!([{"kind": "ServiceAccount", "name": AGENT, "namespace": NAMESPACE}])
    {
        p.push(format!(
            "ClusterRoleBinding/{AGENT}: subjects {} (only the agent's ServiceAccount in {NAMESPACE})",
            binding["subjects"]
        ));
    }
}

/// Resources, security contexts and host namespaces of every workload.
fn workload_problems(docs: &[Value], p: &mut Vec<String>) {
    for (workload, spec) in pod_specs(docs) {
        let is_agent = workload == format!("DaemonSet/{AGENT}");
        for host in ["hostNetwork", "hostPID", "hostIPC"] {
            // The agent alone shares the host's PID namespace (see
            // agent_problems).
            if spec[host] == true && !(is_agent && host == "hostPID") {
                p.push(format!("{workload}: {host} is not needed"));
            }
        }
        // Service/upid-collector's variables would be UPID_COLLECTOR_*,
        // beside upid's own settings.
        if spec["enableServiceLinks"] != false {
            p.push(format!("{workload}: enableServiceLinks false"));
        }
        if spec["securityContext"]["seccompProfile"]["type"] != "RuntimeDefault" {
            p.push(format!("{workload}: seccompProfile RuntimeDefault"));
        }
        for c in all_containers(spec) {
            let name = format!("{workload} container {}", str_of(&c["name"]));
            let r = &c["resources"];
            for (what, parse) in [
                ("cpu", cpu_millicores as fn(&str) -> Option<u64>),
                ("memory", memory_bytes),
            ] {
                let req = r["requests"][what].as_str().and_then(parse);
                let lim = r["limits"][what].as_str().and_then(parse);
                match (req, lim) {
                    (Some(req), Some(lim)) if req <= lim => {}
                    (Some(_), Some(_)) => p.push(format!("{name}: {what} request above its limit")),
                    _ => p.push(format!("{name}: {what} request and limit both needed")),
                }
            }
            let sc = &c["securityContext"];
            if sc["readOnlyRootFilesystem"] != true {
                p.push(format!("{name}: readOnlyRootFilesystem"));
            }
            if sc["allowPrivilegeEscalation"] != false {
                p.push(format!("{name}: allowPrivilegeEscalation false"));
            }
            if sc["privileged"] == true {
                p.push(format!("{name}: privileged"));
            }
            if !strings(&sc["capabilities"]["drop"]).contains(&"ALL".to_string()) {
                p.push(format!("{name}: capabilities drop ALL"));
            }
            let allowed: &[&str] = if workload == format!("DaemonSet/{AGENT}") {
                &AGENT_CAPABILITIES
            } else {
                &[]
            };
            for cap in strings(&sc["capabilities"]["add"]) {
                if !allowed.contains(&cap.as_str()) {
                    p.push(format!("{name}: capability {cap} added"));
                }
            }
        }
    }
}

fn agent_problems(docs: &[Value], p: &mut Vec<String>) {
    let ds = find(docs, "DaemonSet", AGENT).unwrap_or(&Value::Null);
    let spec = &ds["spec"]["template"]["spec"];
    if spec["serviceAccountName"] != AGENT {
        p.push(format!("DaemonSet/{AGENT}: serviceAccountName {AGENT}"));
    }
    // cgroup.procs names processes as the reader's PID namespace numbers
    // them (and omits the others): only in the host's do they match
    // /host/proc/<pid>, where network namespaces are found.
    if spec["hostPID"] != true {
        p.push(format!(
            "DaemonSet/{AGENT}: hostPID, or cgroup.procs lists no host pids (no traffic per pod)"
        ));
    }
    let tolerates_all = arr(&spec["tolerations"])
        .iter()
        .any(|t| t["operator"] == "Exists" && t["key"].is_null() && t["effect"].is_null());
    if !tolerates_all {
        p.push(format!(
            "DaemonSet/{AGENT}: a toleration `operator: Exists` (no key, no effect) for every node"
        ));
    }
    let containers = arr(&spec["containers"]);
    let [c] = containers else {
        p.push(format!("DaemonSet/{AGENT}: one container"));
        return;
    };
    if c["image"] != format!("upid/agent:{}", env!("CARGO_PKG_VERSION")) {
        p.push(format!("DaemonSet/{AGENT}: image {}", c["image"]));
    }
    if strings(&c["args"]).first().map(String::as_str) != Some("run") {
        p.push(format!("DaemonSet/{AGENT}: upid-agent run"));
    }
    let node = env_entry(c, NODE_NAME_ENV);
    if node.map(|e| &e["valueFrom"]["fieldRef"]["fieldPath"]) != Some(&json!("spec.nodeName")) {
        p.push(format!(
            "DaemonSet/{AGENT}: {NODE_NAME_ENV} from the downward API (fieldRef spec.nodeName)"
        ));
    }
    let flags = flag_values(c);
    // The host's /proc and /sys/fs/cgroup under --host-root, read-only.
    let host_root = flags.get("host-root").cloned().unwrap_or_default();
    for (host_path, inside) in [("/proc", "/proc"), ("/sys/fs/cgroup", "/sys/fs/cgroup")] {
        let at = format!("{host_root}{inside}");
        let ok = arr(&c["volumeMounts"]).iter().any(|m| {
            m["mountPath"] == at.as_str()
                && m["readOnly"] == true
                && volume(spec, str_of(&m["name"])).map(|v| &v["hostPath"]["path"])
                    == Some(&json!(host_path))
        });
        if host_root.is_empty() || !ok {
            p.push(format!(
                "DaemonSet/{AGENT}: the host's {host_path} read-only at --host-root ({host_root:?}) + {inside}"
            ));
        }
    }
    // The spool: a hostPath directory (survives restarts), the only
    // writable host mount.
    let spool_dir = flags.get("spool-dir").cloned().unwrap_or_default();
    let spool_mount = arr(&c["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"] == spool_dir.as_str());
    let spool_volume = spool_mount.and_then(|m| volume(spec, str_of(&m["name"])));
    match spool_volume {
        Some(v) if v["hostPath"]["path"].is_string() => {}
        _ => p.push(format!(
            "DaemonSet/{AGENT}: --spool-dir ({spool_dir:?}) on a hostPath volume, so it survives pod restarts"
        )),
    }
    for m in arr(&c["volumeMounts"]) {
        let Some(v) = volume(spec, str_of(&m["name"])) else {
            p.push(format!(
                "DaemonSet/{AGENT}: mount of an undefined volume {}",
                m["name"]
            ));
            continue;
        };
        let is_spool = Some(m) == spool_mount;
        if v["hostPath"].is_object() && !is_spool && m["readOnly"] != true {
            p.push(format!(
                "DaemonSet/{AGENT}: hostPath mount {} must be readOnly",
                m["mountPath"]
            ));
        }
        if is_spool && m["readOnly"] == true {
            p.push(format!("DaemonSet/{AGENT}: the spool must be writable"));
        }
    }
    // The Docker Engine: looked for exactly when its socket is mounted.
    let no_docker = env_entry(c, "UPID_NO_DOCKER").map(|e| &e["value"]);
    let docker_host = env_entry(c, "UPID_DOCKER_HOST").map(|e| str_of(&e["value"]));
    match docker_host.and_then(|h| h.strip_prefix("unix://")) {
        Some(socket) => {
            let mounted = arr(&c["volumeMounts"]).iter().any(|m| {
                m["mountPath"] == socket
                    && m["readOnly"] == true
                    && volume(spec, str_of(&m["name"])).map(|v| &v["hostPath"]["type"])
                        == Some(&json!("Socket"))
            });
            if !mounted {
                p.push(format!(
                    "DaemonSet/{AGENT}: UPID_DOCKER_HOST {socket} is not a read-only Socket hostPath mount"
                ));
            }
            if no_docker != Some(&json!("false")) {
                p.push(format!(
                    "DaemonSet/{AGENT}: UPID_NO_DOCKER \"false\" with the socket"
                ));
            }
        }
        None if no_docker != Some(&json!("true")) => p.push(format!(
            "DaemonSet/{AGENT}: UPID_NO_DOCKER \"true\" without a Docker socket"
        )),
        None => {}
    }
    // The kernel log: an unprivileged container cannot open /dev/kmsg, so
    // the agent is told not to try (else it warns at every start).
    let kmsg_usable = c["securityContext"]["privileged"] == true
        && arr(&c["volumeMounts"])
            .iter()
            .any(|m| m["mountPath"] == "/dev/kmsg");
    let no_kernel_log = env_entry(c, "UPID_NO_KERNEL_LOG").map(|e| &e["value"]);
    if !kmsg_usable && no_kernel_log != Some(&json!("true")) {
        p.push(format!(
            "DaemonSet/{AGENT}: UPID_NO_KERNEL_LOG \"true\" without a privileged container and /dev/kmsg"
        ));
    }
    if let Some(req) = c["resources"]["requests"]["memory"]
        .as_str()
        .and_then(memory_bytes)
        && req < AGENT_RSS_GOAL_BYTES
    {
        p.push(format!(
            "DaemonSet/{AGENT}: memory request below the agent's 16 MiB RSS goal"
        ));
    }
    // Talks TLS to the collector's Service, with a token and the CA from
    // mounted Secrets.
    let url = flags.get("collector").cloned().unwrap_or_default();
    let svc = find(docs, "Service", COLLECTOR).unwrap_or(&Value::Null);
    let grpc_port = arr(&svc["spec"]["ports"])
        .iter()
        .find(|sp| sp["name"] == "grpc")
        .and_then(|sp| sp["port"].as_u64());
    let want = grpc_port.map(|port| format!("https://{COLLECTOR}.{NAMESPACE}.svc:{port}"));
    if Some(&url) != want.as_ref() {
        p.push(format!(
            "DaemonSet/{AGENT}: --collector {url:?}, expected {want:?} (TLS, the Service's grpc port)"
        ));
    }
    for flag in ["token-file", "ca"] {
        let path = flags.get(flag).cloned().unwrap_or_default();
        if secret_file(spec, c, &path).is_none() {
            p.push(format!(
                "DaemonSet/{AGENT}: --{flag} ({path:?}) from a mounted Secret"
            ));
        }
    }
}

fn collector_problems(docs: &[Value], p: &mut Vec<String>) {
    let sts = find(docs, "StatefulSet", COLLECTOR).unwrap_or(&Value::Null);
    let spec = &sts["spec"]["template"]["spec"];
    let labels = &sts["spec"]["template"]["metadata"]["labels"];
    if sts["spec"]["replicas"] != 1 {
        p.push(format!(
            "StatefulSet/{COLLECTOR}: one replica (one writer per store)"
        ));
    }
    if sts["spec"]["serviceName"] != HEADLESS {
        p.push(format!("StatefulSet/{COLLECTOR}: serviceName {HEADLESS}"));
    }
    if spec["automountServiceAccountToken"] != false {
        p.push(format!(
            "StatefulSet/{COLLECTOR}: no API token (it never calls the API server)"
        ));
    }
    let non_root = spec["securityContext"]["runAsNonRoot"] == true
        && spec["securityContext"]["runAsUser"]
            .as_u64()
            .is_some_and(|u| u != 0);
    if !non_root {
        p.push(format!("StatefulSet/{COLLECTOR}: runs as a non-root user"));
    }
    let containers = arr(&spec["containers"]);
    let [c] = containers else {
        p.push(format!("StatefulSet/{COLLECTOR}: one container"));
        return;
    };
    if c["image"] != format!("upid/collector:{}", env!("CARGO_PKG_VERSION")) {
        p.push(format!("StatefulSet/{COLLECTOR}: image {}", c["image"]));
    }
    if strings(&c["args"]).first().map(String::as_str) != Some("serve") {
        p.push(format!("StatefulSet/{COLLECTOR}: upid-collector serve"));
    }
    let flags = flag_values(c);
    // The store on the volume claim.
    let store = flags.get("store").cloned().unwrap_or_default();
    let claims: Vec<&str> = arr(&sts["spec"]["volumeClaimTemplates"])
        .iter()
        .map(|t| str_of(&t["metadata"]["name"]))
        .collect();
    match mount_of(c, &store) {
        Some(m) if claims.contains(&str_of(&m["name"])) => {}
        _ => p.push(format!(
            "StatefulSet/{COLLECTOR}: --store ({store:?}) on a volumeClaimTemplate"
        )),
    }
    // TLS and tokens from Secrets.
    for flag in ["tls-cert", "tls-key", "tokens-file"] {
        let path = flags.get(flag).cloned().unwrap_or_default();
        if secret_file(spec, c, &path).is_none() {
            p.push(format!(
                "StatefulSet/{COLLECTOR}: --{flag} ({path:?}) from a mounted Secret"
            ));
        }
    }
    // Listeners, container ports and Service ports agree.
    for (flag, port_name) in [("listen", "grpc"), ("metrics-listen", "metrics")] {
        let listen = flags.get(flag).and_then(|a| listen_port(a));
        if listen.is_none() || listen != container_port(c, port_name) {
            p.push(format!(
                "StatefulSet/{COLLECTOR}: --{flag} port {listen:?} is the containerPort named {port_name}"
            ));
        }
        let svc = find(docs, "Service", COLLECTOR).unwrap_or(&Value::Null);
        let port = arr(&svc["spec"]["ports"])
            .iter()
            .find(|sp| sp["name"] == port_name);
        let target_ok = port
            .is_some_and(|sp| sp["targetPort"] == port_name || sp["targetPort"].as_u64() == listen);
        if !target_ok {
            p.push(format!(
                "Service/{COLLECTOR}: port {port_name} targets the collector's {port_name} port"
            ));
        }
    }
    for svc_name in [COLLECTOR, HEADLESS] {
        let svc = find(docs, "Service", svc_name).unwrap_or(&Value::Null);
        if !svc["spec"]["selector"].is_object() || !selects(&svc["spec"]["selector"], labels) {
            p.push(format!("Service/{svc_name}: selects the collector's pods"));
        }
    }
    let headless = find(docs, "Service", HEADLESS).unwrap_or(&Value::Null);
    if headless["spec"]["clusterIP"] != "None" {
        p.push(format!("Service/{HEADLESS}: clusterIP None"));
    }
    // /metrics through one Service only, so a ServiceMonitor scrapes once.
    if arr(&headless["spec"]["ports"])
        .iter()
        .any(|sp| sp["name"] == "metrics")
    {
        p.push(format!(
            "Service/{HEADLESS}: no metrics port (scraped through {COLLECTOR})"
        ));
    }
}

fn network_policy_problems(docs: &[Value], p: &mut Vec<String>) {
    let agent_labels = &find(docs, "DaemonSet", AGENT).unwrap_or(&Value::Null)["spec"]["template"]
        ["metadata"]["labels"];
    let collector_labels = &find(docs, "StatefulSet", COLLECTOR).unwrap_or(&Value::Null)["spec"]["template"]
        ["metadata"]["labels"];
    let deny = find(docs, "NetworkPolicy", "default-deny-ingress").unwrap_or(&Value::Null);
    if deny["spec"]["podSelector"] != json!({})
        || !strings(&deny["spec"]["policyTypes"]).contains(&"Ingress".to_string())
        || !arr(&deny["spec"]["ingress"]).is_empty()
    {
        p.push("NetworkPolicy/default-deny-ingress: every pod, Ingress, no rule".to_string());
    }
    let mut agents_reach_grpc = false;
    let mut metrics_scraped = false;
    for np in docs.iter().filter(|d| d["kind"] == "NetworkPolicy") {
        let name = str_of(&np["metadata"]["name"]);
        let selector = &np["spec"]["podSelector"]["matchLabels"];
        let rules = arr(&np["spec"]["ingress"]);
        if selects(selector, agent_labels) && !rules.is_empty() {
            p.push(format!(
                "NetworkPolicy/{name}: lets something in to the agents, which listen on nothing"
            ));
        }
        for rule in rules {
            let from = arr(&rule["from"]);
            if from.is_empty() {
                p.push(format!(
                    "NetworkPolicy/{name}: a rule without `from` lets anyone in"
                ));
            }
            if from.iter().any(|f| !f["ipBlock"].is_null()) {
                p.push(format!(
                    "NetworkPolicy/{name}: ipBlock lets outside addresses in"
                ));
            }
            let ports: Vec<&Value> = arr(&rule["ports"]).iter().map(|pt| &pt["port"]).collect();
            if ports.is_empty() {
                p.push(format!(
                    "NetworkPolicy/{name}: a rule without ports opens every port"
                ));
            }
            if !selects(selector, collector_labels) {
                continue;
            }
            for port in &ports {
                if *port != "grpc" && *port != "metrics" {
                    p.push(format!(
                        "NetworkPolicy/{name}: port {port} is not the collector's"
                    ));
                }
            }
            let from_agents = from.iter().any(|f| {
                f["namespaceSelector"].is_null()
                    && selects(&f["podSelector"]["matchLabels"], agent_labels)
                    && f["podSelector"]["matchLabels"].is_object()
            });
            if from_agents && ports.contains(&&json!("grpc")) {
                agents_reach_grpc = true;
            }
            if ports.contains(&&json!("metrics")) {
                metrics_scraped = true;
            }
        }
    }
    if !agents_reach_grpc {
        p.push("NetworkPolicy: the agents reach the collector's grpc port".to_string());
    }
    if !metrics_scraped {
        p.push("NetworkPolicy: Prometheus reaches the collector's metrics port".to_string());
    }
}

#[test]
fn kustomizations_list_every_manifest() {
    let dir = k8s_dir();
    let top = kustomization(&dir);
    assert_eq!(
        strings(&top["resources"]),
        ["base"],
        "deploy/kubernetes builds on base/"
    );
    let overlay = kustomization(&dir.join("docker-socket"));
    assert_eq!(strings(&overlay["resources"]), ["../base"]);
    let base = kustomization(&dir.join("base"));
    assert_eq!(base["namespace"], NAMESPACE);
    let listed: BTreeSet<String> = strings(&base["resources"]).into_iter().collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir.join("base"))
        .expect("listing deploy/kubernetes/base")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, on_disk,
        "base/kustomization.yaml lists every manifest in base/"
    );
    for doc in base_docs() {
        assert!(
            doc["metadata"]["namespace"].is_null() || doc["metadata"]["namespace"] == NAMESPACE,
            "{}/{} belongs in {NAMESPACE} (set by the kustomization)",
            doc["kind"],
            doc["metadata"]["name"]
        );
    }
}

/// `kubernetes-validate` as a command, when installed.
fn kubernetes_validate() -> Option<Vec<String>> {
    let candidates = [
        vec!["kubernetes-validate".to_string()],
        vec!["python3".into(), "-m".into(), "kubernetes_validate".into()],
    ];
    candidates.into_iter().find(|c| {
        Command::new(&c[0])
            .args(&c[1..])
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Validates `files` (holding `documents` documents) strictly against every
/// supported version; panics with the tool's report when one fails.
fn validate_all_versions(tool: &[String], files: &[PathBuf], documents: usize) {
    for version in SUPPORTED_KUBERNETES {
        let out = Command::new(&tool[0])
            .args(&tool[1..])
            .args(["--strict", "-k", version])
            .args(files)
            .output()
            .expect("running kubernetes-validate");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let passed = report.matches(" passed for resource ").count();
        assert!(
            out.status.success() && passed == documents && !report.contains("WARN"),
            "Kubernetes {version}: {passed} of {documents} documents passed \
             (a WARN is a kind without a schema):\n{report}"
        );
    }
}

#[test]
fn manifests_are_valid_for_every_supported_kubernetes_version() {
    let test = "manifests_are_valid_for_every_supported_kubernetes_version";
    let Some(tool) = kubernetes_validate() else {
        return unavailable(
            test,
            "kubernetes-validate is not installed (pip install kubernetes-validate)",
        );
    };
    let files = base_files();
    let documents = base_docs().len();
    assert!(documents >= 11, "the base has its manifests");
    validate_all_versions(&tool, &files, documents);
}

#[test]
fn manifests_keep_what_users_rely_on() {
    let found = problems(&base_docs());
    assert!(
        found.is_empty(),
        "deploy/kubernetes/base:\n  {}",
        found.join("\n  ")
    );
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir)
        .expect("listing agent sources")
        .flatten()
    {
        let path = e.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn agent_role_covers_exactly_the_kubernetes_types_the_agent_code_uses() {
    let mut files = Vec::new();
    rust_files(&repo().join("agent/src"), &mut files);
    let api_type = regex::Regex::new(r"\bApi\s*(?:::)?<\s*([A-Za-z]+)\s*>").expect("regex");
    let writes = regex::Regex::new(
        r"\.(create|patch|patch_status|replace_status|delete|delete_collection|create_subresource|patch_subresource|evict)\(",
    )
    .expect("regex");
    let mut used = BTreeSet::new();
    for f in &files {
        let text = read(f);
        if !text.contains("kube::") {
            continue;
        }
        used.extend(api_type.captures_iter(&text).map(|c| c[1].to_string()));
        if let Some(m) = writes.find(&text) {
            panic!(
                "{}: `{}` looks like a write to the API server; the agent's role is read-only (update deploy/kubernetes/base/agent-rbac.yaml and this test if it must)",
                f.display(),
                m.as_str()
            );
        }
    }
    let granted: BTreeSet<String> = AGENT_API_CALLS.iter().map(|c| c.0.to_string()).collect();
    assert_eq!(
        used, granted,
        "the agent's code uses these Kubernetes types; AGENT_API_CALLS (and so the ClusterRole) must name the same"
    );
    // The watcher is what lists and watches pods.
    let kube_rs = read(&repo().join("agent/src/inventory/kube.rs"));
    assert!(kube_rs.contains("watcher::watcher(") && kube_rs.contains("Api<Pod>"));
    assert!(kube_rs.contains("nodes.get_opt("), "get on nodes");
}

#[test]
fn node_name_comes_from_the_downward_api_into_what_the_agent_reads() {
    let cli = read(&repo().join("agent/src/cli.rs"));
    let arg = format!("env = \"{NODE_NAME_ENV}\")]\n    pub node_name");
    assert!(
        cli.contains(&arg),
        "agent/src/cli.rs: --node-name reads {NODE_NAME_ENV}"
    );
    let docs = base_docs();
    let ds = find(&docs, "DaemonSet", AGENT).expect("the agent DaemonSet");
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_entry(c, NODE_NAME_ENV).map(|e| &e["valueFrom"]["fieldRef"]["fieldPath"]),
        Some(&json!("spec.nodeName"))
    );
}

/// What a binary's `--help` says it accepts.
#[derive(Debug, Default)]
struct Accepts {
    subcommands: BTreeSet<String>,
    /// Long flags, and whether each takes a value.
    flags: BTreeMap<String, bool>,
    envs: BTreeSet<String>,
}

fn help_of(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .arg("--help")
        .env_remove("UPID_LOG")
        .output()
        .unwrap_or_else(|e| panic!("running {} --help: {e}", bin.display()));
    assert!(
        out.status.success(),
        "{} {args:?} --help failed",
        bin.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn accepts(bin: &Path, subcommand: &str) -> Accepts {
    let top = help_of(bin, &[]);
    let mut a = Accepts::default();
    let mut in_commands = false;
    for line in top.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
        } else if in_commands && !line.starts_with("  ") {
            in_commands = false;
        } else if in_commands && let Some(word) = line.split_whitespace().next() {
            a.subcommands.insert(word.to_string());
        }
    }
    let sub = help_of(bin, &[subcommand]);
    let flag = regex::Regex::new(r"(?m)^\s+(?:-[A-Za-z], )?--([a-z0-9][a-z0-9-]*)( <[^>]+>)?")
        .expect("regex");
    for c in flag.captures_iter(&sub) {
        a.flags.insert(c[1].to_string(), c.get(2).is_some());
    }
    let env = regex::Regex::new(r"\[env: ([A-Z0-9_]+)=").expect("regex");
    a.envs
        .extend(env.captures_iter(&sub).map(|c| c[1].to_string()));
    a
}

/// Where the workspace build puts the binaries (beside `upid`), or
/// `UPID_BIN_DIR`.
fn built_binary(name: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("UPID_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_BIN_EXE_upid"))
            .parent()?
            .to_path_buf(),
    };
    let path = dir.join(name);
    path.is_file().then_some(path)
}

/// What is wrong with the args and `UPID_*` variables of `container` for
/// a binary that accepts `a` and whose `main.rs` is `main_rs`.
fn argument_problems(container: &Value, a: &Accepts, main_rs: &str) -> Vec<String> {
    let mut p = Vec::new();
    let args = strings(&container["args"]);
    match args.first() {
        Some(sub) if a.subcommands.contains(sub) => {}
        other => p.push(format!(
            "first argument {other:?} is not a subcommand of {:?}",
            a.subcommands
        )),
    }
    for arg in args.iter().skip(1) {
        let Some(flag) = arg.strip_prefix("--") else {
            p.push(format!("{arg:?}: give flags as --name=value"));
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (flag, None),
        };
        match a.flags.get(name) {
            None => p.push(format!("--{name} is not a flag of this binary")),
            Some(true) if value.is_none() => {
                p.push(format!("--{name} takes a value: --{name}=VALUE"))
            }
            Some(false) if value.is_some() => p.push(format!("--{name} takes no value")),
            _ => {}
        }
    }
    for e in arr(&container["env"]) {
        let name = str_of(&e["name"]);
        let read_by_main = main_rs.contains(&format!("\"{name}\""));
        if !a.envs.contains(name) && !read_by_main {
            p.push(format!("environment variable {name} is read by nothing"));
        }
    }
    p
}

#[test]
fn arguments_and_variables_are_what_the_binaries_accept() {
    let test = "arguments_and_variables_are_what_the_binaries_accept";
    let docs = base_docs();
    let patch = docker_socket_patch();
    let cases = [
        ("upid-agent", "DaemonSet", AGENT, "agent/src/main.rs"),
        (
            "upid-collector",
            "StatefulSet",
            COLLECTOR,
            "collector/src/main.rs",
        ),
    ];
    let mut checked = 0;
    for (bin, kind, name, main_rs) in cases {
        let Some(path) = built_binary(bin) else {
            unavailable(
                test,
                &format!("{bin} is not built beside upid (a workspace build, or UPID_BIN_DIR)"),
            );
            continue;
        };
        let main_rs = read(&repo().join(main_rs));
        let doc = find(&docs, kind, name).unwrap_or_else(|| panic!("{kind}/{name}"));
        let c = &doc["spec"]["template"]["spec"]["containers"][0];
        let sub = strings(&c["args"]).first().cloned().unwrap_or_default();
        let a = accepts(&path, &sub);
        assert!(!a.flags.is_empty(), "{bin} {sub} --help lists no flags");
        let found = argument_problems(c, &a, &main_rs);
        assert!(
            found.is_empty(),
            "{kind}/{name} ({bin}):\n  {}",
            found.join("\n  ")
        );
        checked += 1;
        if patch["kind"] == kind && patch["metadata"]["name"] == name {
            // The overlay's variables, with the base's arguments.
            let patched = json!({
                "args": c["args"],
                "env": patch["spec"]["template"]["spec"]["containers"][0]["env"],
            });
            let found = argument_problems(&patched, &a, &main_rs);
            assert!(
                found.is_empty(),
                "docker-socket overlay ({bin}):\n  {}",
                found.join("\n  ")
            );
            checked += 1;
        }
    }
    eprintln!("checked the arguments of {checked} containers against the binaries' --help");
}

/// The docker-socket overlay's patch, as a document.
fn docker_socket_patch() -> Value {
    let k = kustomization(&k8s_dir().join("docker-socket"));
    let patches = arr(&k["patches"]);
    assert_eq!(patches.len(), 1, "docker-socket: one patch");
    assert_eq!(patches[0]["target"]["kind"], "DaemonSet");
    assert_eq!(patches[0]["target"]["name"], AGENT);
    let mut docs = yaml_docs(str_of(&patches[0]["patch"]), "docker-socket patch");
    assert_eq!(docs.len(), 1);
    docs.remove(0)
}

#[test]
fn docker_socket_overlay_mounts_the_socket_read_only_and_turns_docker_on() {
    let patch = docker_socket_patch();
    let spec = &patch["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    assert_eq!(c["name"], "agent", "patches the agent container by name");
    let host = env_entry(c, "UPID_DOCKER_HOST").map(|e| str_of(&e["value"]));
    let socket = host
        .and_then(|h| h.strip_prefix("unix://"))
        .expect("UPID_DOCKER_HOST unix://");
    let m = mount_of(c, socket).expect("the socket is mounted");
    assert_eq!(m["readOnly"], true, "the socket mount is read-only");
    let v = volume(spec, str_of(&m["name"])).expect("its volume");
    assert_eq!(
        v["hostPath"],
        json!({"path": "/var/run/docker.sock", "type": "Socket"})
    );
    assert_eq!(
        env_entry(c, "UPID_NO_DOCKER").map(|e| &e["value"]),
        Some(&json!("false"))
    );
}

/// `kubectl` with a kustomize that knows `patches` (1.21 or later).
fn kubectl_with_kustomize() -> bool {
    let Ok(out) = Command::new("kubectl")
        .args(["version", "--client", "-o", "json"])
        .output()
    else {
        return false;
    };
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let minor = str_of(&v["clientVersion"]["minor"]).trim_end_matches('+');
    v["clientVersion"]["major"] == "1" && minor.parse::<u32>().is_ok_and(|m| m >= 21)
}

#[test]
fn kustomize_renders_valid_manifests_with_the_same_guarantees() {
    let test = "kustomize_renders_valid_manifests_with_the_same_guarantees";
    if !kubectl_with_kustomize() {
        // No registry CI reaches ships a recent kubectl: a skip even in CI.
        eprintln!(
            "\n!!! SKIPPED {test}: no kubectl 1.21+ on PATH to run `kubectl kustomize`; the base and the overlay's patch are checked by the other tests.\n"
        );
        return;
    }
    let tool = kubernetes_validate();
    let tmp = tempfile::tempdir().expect("temp dir");
    for (dir, docker) in [("", false), ("docker-socket", true)] {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(k8s_dir().join(dir))
            .output()
            .expect("running kubectl kustomize");
        assert!(
            out.status.success(),
            "kubectl kustomize deploy/kubernetes/{dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let docs = yaml_docs(&text, &format!("rendered deploy/kubernetes/{dir}"));
        let found = problems(&docs);
        assert!(
            found.is_empty(),
            "rendered deploy/kubernetes/{dir}:\n  {}",
            found.join("\n  ")
        );
        for d in &docs {
            let cluster_wide =
                ["Namespace", "ClusterRole", "ClusterRoleBinding"].contains(&str_of(&d["kind"]));
            assert!(
                cluster_wide || d["metadata"]["namespace"] == NAMESPACE,
                "{}/{} rendered into namespace {NAMESPACE}",
                d["kind"],
                d["metadata"]["name"]
            );
        }
        let ds = find(&docs, "DaemonSet", AGENT).expect("the agent");
        let c = &ds["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            env_entry(c, "UPID_DOCKER_HOST").is_some(),
            docker,
            "{dir}: Docker socket"
        );
        let file = tmp.path().join(format!(
            "rendered-{}.yaml",
            if docker { "docker" } else { "base" }
        ));
        std::fs::write(&file, &text).expect("writing the rendered manifests");
        match &tool {
            Some(tool) => validate_all_versions(tool, &[file], docs.len()),
            None => unavailable(
                test,
                "kubernetes-validate is not installed (pip install kubernetes-validate)",
            ),
        }
    }
}

/// Applies `change` to a copy of the base documents and returns what
/// [`problems`] finds.
fn problems_after(change: impl FnOnce(&mut Vec<Value>)) -> Vec<String> {
    let mut docs = base_docs();
    change(&mut docs);
    problems(&docs)
}

fn doc_mut<'a>(docs: &'a mut [Value], kind: &str, name: &str) -> &'a mut Value {
    docs.iter_mut()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name}"))
}

fn agent_container(docs: &mut [Value]) -> &mut Value {
    &mut doc_mut(docs, "DaemonSet", AGENT)["spec"]["template"]["spec"]["containers"][0]
}

/// Asserts that a problem mentioning `needle` is found.
fn caught(found: &[String], needle: &str) {
    assert!(
        found.iter().any(|f| f.contains(needle)),
        "expected a problem mentioning {needle:?}, got {found:#?}"
    );
}

#[test]
fn the_checks_catch_what_they_guard() {
    caught(
        &problems_after(|d| {
            doc_mut(d, "ClusterRole", AGENT)["rules"][0]["verbs"] = json!(["*"]);
        }),
        "wildcard",
    );
    caught(
        &problems_after(|d| {
            doc_mut(d, "ClusterRole", AGENT)["rules"][0]["verbs"] =
                json!(["list", "watch", "delete"]);
        }),
        "write verb delete",
    );
    caught(
        &problems_after(|d| {
            let rules = doc_mut(d, "ClusterRole", AGENT)["rules"]
                .as_array_mut()
                .expect("rules");
            rules.push(json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}));
        }),
        "never calls",
    );
    caught(
        &problems_after(|d| {
            doc_mut(d, "ClusterRole", AGENT)["rules"]
                .as_array_mut()
                .expect("rules")
                .pop();
        }),
        "which the agent calls",
    );
    caught(
        &problems_after(|d| {
            for m in agent_container(d)["volumeMounts"]
                .as_array_mut()
                .expect("mounts")
            {
                if m["mountPath"] == "/host/proc" {
                    m["readOnly"] = json!(false);
                }
            }
        }),
        "must be readOnly",
    );
    caught(
        &problems_after(|d| {
            doc_mut(d, "DaemonSet", AGENT)["spec"]["template"]["spec"]["tolerations"] =
                json!([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]);
        }),
        "every node",
    );
    caught(
        &problems_after(|d| {
            agent_container(d)["resources"]["limits"] = json!({"cpu": "100m"});
        }),
        "memory request and limit",
    );
    caught(
        &problems_after(|d| {
            for e in agent_container(d)["env"].as_array_mut().expect("env") {
                if e["name"] == NODE_NAME_ENV {
                    e["name"] = json!("NODE_NAME");
                }
            }
        }),
        NODE_NAME_ENV,
    );
    caught(
        &problems_after(|d| {
            doc_mut(d, "DaemonSet", AGENT)["spec"]["template"]["spec"]["hostNetwork"] = json!(true);
        }),
        "hostNetwork is not needed",
    );
    caught(
        &problems_after(|d| {
            let spec = &mut doc_mut(d, "DaemonSet", AGENT)["spec"]["template"]["spec"];
            spec.as_object_mut().expect("pod spec").remove("hostPID");
        }),
        "hostPID",
    );
    caught(
        &problems_after(|d| {
            agent_container(d)["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"]);
        }),
        "capability SYS_ADMIN",
    );
    caught(
        &problems_after(|d| {
            let spec = &mut doc_mut(d, "DaemonSet", AGENT)["spec"]["template"]["spec"];
            for v in spec["volumes"].as_array_mut().expect("volumes") {
                if v["name"] == "spool" {
                    *v = json!({"name": "spool", "emptyDir": {}});
                }
            }
        }),
        "survives pod restarts",
    );
    caught(
        &problems_after(|d| {
            doc_mut(d, "NetworkPolicy", COLLECTOR)["spec"]["ingress"][0]["from"] = json!([]);
        }),
        "lets anyone in",
    );
    caught(
        &problems_after(|d| {
            doc_mut(d, "Service", COLLECTOR)["spec"]["ports"][0]["port"] = json!(443);
        }),
        "--collector",
    );
    caught(
        &problems_after(|d| {
            let sc = &mut doc_mut(d, "StatefulSet", COLLECTOR)["spec"]["template"]["spec"]["securityContext"];
            sc["runAsUser"] = json!(0);
        }),
        "non-root",
    );
    let bad_args = Accepts {
        subcommands: ["run".to_string()].into(),
        flags: [
            ("collector".to_string(), true),
            ("no-reset-peaks".to_string(), false),
        ]
        .into(),
        envs: BTreeSet::new(),
    };
    let c = json!({"args": ["run", "--colector=x", "--collector", "--no-reset-peaks=1", "x"],
                   "env": [{"name": "UPID_NOPE", "value": "1"}]});
    let found = argument_problems(&c, &bad_args, "");
    for needle in [
        "--colector is not",
        "--collector takes a value",
        "takes no value",
        "\"x\"",
        "UPID_NOPE",
    ] {
        caught(&found, needle);
    }
}

#[test]
fn docs_name_the_secrets_keys_and_versions_the_manifests_use() {
    let docs_md = read(&repo().join("docs/deploy.md"));
    // Shell commands with their continuation lines joined.
    let commands = docs_md.replace("\\\n", " ");
    let first = SUPPORTED_KUBERNETES[0].trim_end_matches(".0");
    let last = SUPPORTED_KUBERNETES[SUPPORTED_KUBERNETES.len() - 1].trim_end_matches(".0");
    assert!(
        docs_md.contains(&format!("Kubernetes {first} to {last}")),
        "docs/deploy.md says which versions are supported: Kubernetes {first} to {last}"
    );
    let manifests = base_docs();
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, spec) in pod_specs(&manifests) {
        for c in all_containers(spec) {
            for value in flag_values(c).values() {
                if let Some((secret, key)) = secret_file(spec, c, value) {
                    used.entry(secret).or_default().insert(key);
                }
            }
        }
    }
    assert!(
        used.len() >= 3,
        "the agent's and the collector's secrets: {used:?}"
    );
    for (secret, keys) in used {
        let line = commands
            .lines()
            .find(|l| l.contains("create secret") && l.split_whitespace().any(|w| w == secret))
            .unwrap_or_else(|| panic!("docs/deploy.md creates the Secret {secret}"));
        for key in keys {
            let tls_key = line.contains("secret tls") && (key == "tls.crt" || key == "tls.key");
            assert!(
                tls_key || line.contains(&format!("--from-file={key}=")),
                "docs/deploy.md creates {secret} with the key {key}: {line}"
            );
        }
    }
}
