//! The query API from another language: a Python script using grpcio, with
//! stubs generated here from `proto/` by `grpc_tools.protoc`, calls a real
//! `upid-collector standalone` (GetServerInfo, ListNodes, Top, and the
//! standard health check). Skips loudly without python3 and grpcio (CI
//! installs them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use upid::wire::v1::ListNodesRequest;
use upid_e2e::harness::grpc::{self, connect, query_client};
use upid_e2e::harness::{agent::sampled_cgroups, standalone};
use upid_e2e::{is_root, run, skip_unless, wait_for};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// True when python3 can import grpc and grpc_tools.
fn python_grpc_available() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc, grpc_tools.protoc"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Generates the Python stubs of every `proto/upid/v1/*.proto` into `out`.
fn generate_stubs(out: &Path) {
    let root = repo_root();
    let mut protos: Vec<PathBuf> = std::fs::read_dir(root.join("proto/upid/v1"))
        .expect("proto/upid/v1")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    protos.sort();
    run(Command::new("python3")
        .current_dir(&root)
        .args(["-m", "grpc_tools.protoc", "-I", "proto"])
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .args(protos.iter().map(|p| p.strip_prefix(&root).unwrap_or(p))));
}

#[test]
fn a_python_grpcio_client_queries_the_collector() {
    if skip_unless(
        python_grpc_available(),
        "python3 with grpcio and grpcio-tools is needed (python3 -m pip install grpcio grpcio-tools)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let stubs = dir.path().join("stubs");
    std::fs::create_dir(&stubs).expect("mkdir stubs");
    generate_stubs(&stubs);

    // As root, a test cgroup gives Top something to show on any host.
    let cgroup = (!skip_unless(is_root(), "not root: Top is only checked to answer"))
        .then(|| sampled_cgroups("upid-e2e-python", 1));
    let mut cmd = standalone(&dir.path().join("upid.duckdb")).args([
        "--interval",
        "1s",
        "--node-name",
        "py-node",
    ]);
    if let Some(c) = &cgroup {
        cmd = cmd.args(["--cgroup-glob", &c.glob]);
    }
    let collector = cmd.start();
    let url = collector.url();
    // Two ticks stored: rates (Top) need a pair of samples.
    wait_for(Duration::from_secs(60), "py-node with two ticks", || {
        grpc::runtime().block_on(async {
            let channel = connect(&url, None).await.ok()?;
            let nodes = query_client(channel, None)
                .list_nodes(ListNodesRequest {})
                .await
                .ok()?
                .into_inner()
                .nodes;
            nodes
                .into_iter()
                .find(|n| n.node_name == "py-node" && n.last_seq >= 2)
        })
    });

    let script = repo_root().join("tests/python/query_client.py");
    let out = run(Command::new("python3")
        .arg(&script)
        .args(["--target", &collector.grpc.to_string()])
        .arg("--stubs")
        .arg(&stubs));
    let got: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("the script's output is JSON ({e}): {out}"));

    assert_eq!(got["health"], "SERVING", "{got}");
    let info = &got["server_info"];
    assert!(
        info["collector_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{info}"
    );
    assert!(
        info["store_path"]
            .as_str()
            .is_some_and(|p| p.ends_with("upid.duckdb")),
        "{info}"
    );
    assert_eq!(info["auth_required"], false, "{info}");
    let nodes = got["nodes"].as_array().expect("nodes");
    let node = nodes
        .iter()
        .find(|n| n["node_name"] == "py-node")
        .unwrap_or_else(|| panic!("py-node listed: {got}"));
    assert!(node["cpu_count"].as_u64().is_some_and(|c| c >= 1), "{node}");
    assert!(
        node["memory_total_bytes"].as_u64().is_some_and(|m| m > 0),
        "{node}"
    );
    assert!(
        node["cgroup_layout"]
            .as_str()
            .is_some_and(|l| l != "CGROUP_LAYOUT_UNSPECIFIED"),
        "{node}"
    );
    let top = got["top"].as_array().expect("top is a list");
    if let Some(c) = &cgroup {
        let path = c.glob.trim_end_matches('*').to_string() + "0";
        assert!(
            top.iter().any(|e| e["cgroup_path"] == path.as_str()),
            "Top shows the test cgroup {path}: {got}"
        );
    }
    collector.stop();
}
