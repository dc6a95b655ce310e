//! Layout detection (mountinfo fixtures from real hosts), cgroup
//! identification, globs, and discovery over temp-dir trees that mimic v1,
//! v2 and hybrid hosts, plus one walk of the real host's hierarchies.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use upid::model::{CgroupIdentity, CgroupLayout, QosClass, Runtime};
use upid_agent::cgroup::Hierarchies;
use upid_agent::cgroup::discover::{DiscoverError, MAX_DEPTH, discover};
use upid_agent::cgroup::identity::{CgroupGlob, GlobError, identify};
use upid_agent::cgroup::mountinfo::{
    CgroupMount, CgroupVersion, LayoutError, MountinfoError, detect, hierarchies_from_mounts,
    parse_mountinfo, parse_mountinfo_counted,
};
use upid_agent::host::HostRoot;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mountinfo");

/// Container ids used throughout (64 lowercase hex).
const ID_A: &str = "3e7ac1dbd2b6b6e2bca97ad5e3f0f1f0b4d9b09a33a4b5c2ad5d6b59fd1c5a9e";
const ID_B: &str = "9d1e7c3b0a54f1e2d8c6b7a9f0e1d2c3b4a5968778695a4b3c2d1e0f9a8b7c6d";
const ID_C: &str = "0000000000000000000000000000000000000000000000000000000000000abc";
/// Pod UIDs, as Kubernetes writes them (with `-`).
const POD_G: &str = "5b8d5e8e-2f5b-4a4b-9c1d-0e2f3a4b5c6d";
const POD_B: &str = "c0ffee00-1111-2222-3333-444455556666";
const POD_E: &str = "deadbeef-aaaa-bbbb-cccc-ddddeeeeffff";

fn fixture(name: &str) -> String {
    let path = Path::new(FIXTURES).join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn hierarchies(layout: CgroupLayout, unified: Option<&str>, v1: &[(&str, &str)]) -> Hierarchies {
    Hierarchies {
        layout,
        unified: unified.map(PathBuf::from),
        v1: v1
            .iter()
            .map(|(c, p)| ((*c).to_owned(), PathBuf::from(p)))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn detect_text(text: &str) -> Hierarchies {
    let mounts = parse_mountinfo(text).expect("parses");
    hierarchies_from_mounts(&mounts).expect("has cgroup mounts")
}

fn underscored(uid: &str) -> String {
    uid.replace('-', "_")
}

// ---------------------------------------------------------------- layout

#[test]
fn pure_v2_systemd_host() {
    let h = detect_text(&fixture("v2-systemd.mountinfo"));
    assert_eq!(
        h,
        hierarchies(CgroupLayout::V2, Some("/sys/fs/cgroup"), &[])
    );
    assert_eq!(h.primary(), Some(Path::new("/sys/fs/cgroup")));
}

#[test]
fn pure_v1_with_co_mounted_cpu_cpuacct() {
    let h = detect_text(&fixture("v1-cpu-cpuacct.mountinfo"));
    let cg = "/sys/fs/cgroup";
    let expected = hierarchies(
        CgroupLayout::V1,
        None,
        &[
            ("blkio", "/sys/fs/cgroup/blkio"),
            ("cpu", "/sys/fs/cgroup/cpu,cpuacct"),
            ("cpuacct", "/sys/fs/cgroup/cpu,cpuacct"),
            ("cpuset", "/sys/fs/cgroup/cpuset"),
            ("devices", "/sys/fs/cgroup/devices"),
            ("freezer", "/sys/fs/cgroup/freezer"),
            ("hugetlb", "/sys/fs/cgroup/hugetlb"),
            ("memory", "/sys/fs/cgroup/memory"),
            ("name=systemd", "/sys/fs/cgroup/systemd"),
            ("net_cls", "/sys/fs/cgroup/net_cls,net_prio"),
            ("net_prio", "/sys/fs/cgroup/net_cls,net_prio"),
            ("perf_event", "/sys/fs/cgroup/perf_event"),
            ("pids", "/sys/fs/cgroup/pids"),
        ],
    );
    assert_eq!(h, expected);
    assert_eq!(h.primary(), Some(Path::new(cg).join("memory").as_path()));
    assert_eq!(
        h.v1_controller("cpu"),
        Some(Path::new("/sys/fs/cgroup/cpu,cpuacct"))
    );
}

#[test]
fn hybrid_this_host_separate_cpu_and_cpuacct() {
    let h = detect_text(&fixture("hybrid-this-host.mountinfo"));
    let expected = hierarchies(
        CgroupLayout::Hybrid,
        Some("/sys/fs/cgroup/unified"),
        &[
            ("blkio", "/sys/fs/cgroup/blkio"),
            ("cpu", "/sys/fs/cgroup/cpu"),
            ("cpuacct", "/sys/fs/cgroup/cpuacct"),
            ("cpuset", "/sys/fs/cgroup/cpuset"),
            ("devices", "/sys/fs/cgroup/devices"),
            ("freezer", "/sys/fs/cgroup/freezer"),
            ("memory", "/sys/fs/cgroup/memory"),
            ("name=systemd", "/sys/fs/cgroup/systemd"),
            ("pids", "/sys/fs/cgroup/pids"),
        ],
    );
    assert_eq!(h, expected);
    assert_eq!(h.primary(), Some(Path::new("/sys/fs/cgroup/memory")));
}

#[test]
fn hybrid_ubuntu_2004_co_mounted() {
    let h = detect_text(&fixture("hybrid-ubuntu2004.mountinfo"));
    let expected = hierarchies(
        CgroupLayout::Hybrid,
        Some("/sys/fs/cgroup/unified"),
        &[
            ("blkio", "/sys/fs/cgroup/blkio"),
            ("cpu", "/sys/fs/cgroup/cpu,cpuacct"),
            ("cpuacct", "/sys/fs/cgroup/cpu,cpuacct"),
            ("cpuset", "/sys/fs/cgroup/cpuset"),
            ("devices", "/sys/fs/cgroup/devices"),
            ("freezer", "/sys/fs/cgroup/freezer"),
            ("hugetlb", "/sys/fs/cgroup/hugetlb"),
            ("memory", "/sys/fs/cgroup/memory"),
            ("misc", "/sys/fs/cgroup/misc"),
            ("name=systemd", "/sys/fs/cgroup/systemd"),
            ("net_cls", "/sys/fs/cgroup/net_cls,net_prio"),
            ("net_prio", "/sys/fs/cgroup/net_cls,net_prio"),
            ("perf_event", "/sys/fs/cgroup/perf_event"),
            ("pids", "/sys/fs/cgroup/pids"),
            ("rdma", "/sys/fs/cgroup/rdma"),
        ],
    );
    assert_eq!(h, expected);
}

#[test]
fn junk_lines_are_skipped_and_counted() {
    let parsed = parse_mountinfo_counted(&fixture("junk-lines.mountinfo")).expect("parses");
    assert_eq!(parsed.malformed, 8);
    let points: Vec<&Path> = parsed
        .mounts
        .iter()
        .map(|m| m.mount_point.as_path())
        .collect();
    assert_eq!(
        points,
        [
            "/sys/fs/cgroup/my memory",
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup/cpu,cpuacct",
            "/sys/fs/cgroup/cpuacct2",
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup/unified2",
        ]
        .map(Path::new)
    );
    assert_eq!(
        parsed.mounts[2],
        CgroupMount {
            version: CgroupVersion::V1,
            root: "/docker/0123".to_owned(),
            mount_point: PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
            controllers: vec!["cpu".to_owned(), "cpuacct".to_owned()],
        }
    );

    // Whole-hierarchy mounts win over the sub-cgroup mount; the first of
    // each controller wins.
    let h = hierarchies_from_mounts(&parsed.mounts).expect("cgroup mounts");
    let expected = hierarchies(
        CgroupLayout::Hybrid,
        Some("/sys/fs/cgroup/unified"),
        &[
            ("cpu", "/sys/fs/cgroup/cpu,cpuacct"),
            ("cpuacct", "/sys/fs/cgroup/cpuacct2"),
            ("memory", "/sys/fs/cgroup/my memory"),
            ("pids", "/sys/fs/cgroup/pids"),
        ],
    );
    assert_eq!(h, expected);
}

#[test]
fn text_with_no_mountinfo_line_is_an_error() {
    assert_eq!(
        parse_mountinfo("hello\nworld\n"),
        Err(MountinfoError::NoValidLines { lines: 2 })
    );
    assert_eq!(parse_mountinfo(""), Ok(Vec::new()));
    assert_eq!(hierarchies_from_mounts(&[]), None);
}

#[test]
fn named_systemd_hierarchy_beside_cgroup2_is_still_v2() {
    let text = "\
32 22 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate
33 32 0:40 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
";
    let h = detect_text(text);
    assert_eq!(
        h,
        hierarchies(
            CgroupLayout::V2,
            Some("/sys/fs/cgroup"),
            &[("name=systemd", "/sys/fs/cgroup/systemd")]
        )
    );
    assert_eq!(h.primary(), Some(Path::new("/sys/fs/cgroup")));
}

#[test]
fn host_prefix_reads_pid1_table_and_maps_mount_points() {
    let host = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(host.path().join("proc/1")).expect("mkdir");
    fs::write(
        host.path().join("proc/1/mountinfo"),
        fixture("v1-cpu-cpuacct.mountinfo"),
    )
    .expect("write");
    let h = detect(&HostRoot::new(host.path())).expect("detects");
    let root = host.path().join("sys/fs/cgroup");
    assert_eq!(h.layout, CgroupLayout::V1);
    assert_eq!(h.unified, None);
    assert_eq!(h.v1.len(), 13);
    assert_eq!(
        h.v1_controller("memory"),
        Some(root.join("memory").as_path())
    );
    assert_eq!(
        h.v1_controller("cpuacct"),
        Some(root.join("cpu,cpuacct").as_path())
    );
    assert_eq!(
        h.v1_controller("name=systemd"),
        Some(root.join("systemd").as_path())
    );

    fs::write(
        host.path().join("proc/1/mountinfo"),
        fixture("v2-systemd.mountinfo"),
    )
    .expect("write");
    let h = detect(&HostRoot::new(host.path())).expect("detects");
    assert_eq!(h.layout, CgroupLayout::V2);
    assert_eq!(h.unified, Some(root));
}

#[test]
fn container_view_keeps_the_host_bind_under_the_prefix() {
    // The agent's own table inside a container (private cgroupns): its own
    // /sys/fs/cgroup, and the host's bind-mounted at /host/sys/fs/cgroup with
    // a root outside the namespace (`/../..`). This is what the fallback
    // reads when <host>/proc/1/mountinfo is unreadable.
    let mut mounts =
        parse_mountinfo(&fixture("container-self-host-bind.mountinfo")).expect("parses");
    assert_eq!(mounts.len(), 2);
    assert_eq!(mounts[1].root, "/../..");
    mounts.retain(|m| m.mount_point.starts_with("/host"));
    assert_eq!(
        hierarchies_from_mounts(&mounts),
        Some(hierarchies(
            CgroupLayout::V2,
            Some("/host/sys/fs/cgroup"),
            &[]
        ))
    );
}

#[test]
fn host_without_cgroup_mounts_names_the_file() {
    let host = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(host.path().join("proc/1")).expect("mkdir");
    let table = host.path().join("proc/1/mountinfo");
    fs::write(
        &table,
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n27 1 254:0 / / rw - ext4 /dev/vda rw\n",
    )
    .expect("write");
    let err = detect(&HostRoot::new(host.path())).expect_err("no cgroups");
    assert!(matches!(err, LayoutError::NoCgroupMounts { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&table.display().to_string()), "{msg}");
    assert!(msg.contains("cgroup2"), "{msg}");

    fs::write(&table, "not a mount table\n").expect("write");
    let err = detect(&HostRoot::new(host.path())).expect_err("junk");
    assert!(matches!(err, LayoutError::Parse { .. }), "{err:?}");
    assert!(err.to_string().contains(&table.display().to_string()));
}

#[test]
fn this_host_is_detected() {
    let h = detect(&HostRoot::default()).expect("this host has cgroups");
    assert!(h.primary().is_some(), "{h:?}");
}

// -------------------------------------------------------------- identify

fn expect_container(
    path: &str,
    runtime: Runtime,
    id: &str,
    pod: Option<&str>,
    qos: Option<QosClass>,
) {
    let expected = CgroupIdentity {
        cgroup_path: path.to_owned(),
        runtime,
        container_id: Some(id.to_owned()),
        pod_uid: pod.map(str::to_owned),
        qos,
        unit: None,
    };
    assert_eq!(identify(path), Some(expected), "{path}");
}

#[test]
fn identifies_plain_containers() {
    let cases = [
        (
            format!("/system.slice/docker-{ID_A}.scope"),
            Runtime::Docker,
        ),
        (format!("/docker/{ID_A}"), Runtime::Docker),
        (
            format!("/machine.slice/libpod-{ID_A}.scope"),
            Runtime::Podman,
        ),
        (
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID_A}.scope"),
            Runtime::Podman,
        ),
        (format!("/libpod_parent/libpod-{ID_A}"), Runtime::Podman),
        (format!("/system.slice/crio-{ID_A}.scope"), Runtime::Crio),
        (
            format!("/system.slice/cri-containerd-{ID_A}.scope"),
            Runtime::Containerd,
        ),
        (
            format!("/custom.slice/docker-{ID_A}.scope"),
            Runtime::Docker,
        ),
    ];
    for (path, runtime) in cases {
        expect_container(&path, runtime, ID_A, None, None);
    }
}

#[test]
fn identifies_kubelet_systemd_driver() {
    let g = underscored(POD_G);
    let b = underscored(POD_B);
    let e = underscored(POD_E);
    let cases = [
        (
            format!("/kubepods.slice/kubepods-pod{g}.slice/cri-containerd-{ID_A}.scope"),
            Runtime::Containerd,
            POD_G,
            QosClass::Guaranteed,
        ),
        (
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{b}.slice/cri-containerd-{ID_A}.scope"
            ),
            Runtime::Containerd,
            POD_B,
            QosClass::Burstable,
        ),
        (
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{e}.slice/crio-{ID_A}.scope"
            ),
            Runtime::Crio,
            POD_E,
            QosClass::BestEffort,
        ),
        (
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{b}.slice/docker-{ID_A}.scope"
            ),
            Runtime::Docker,
            POD_B,
            QosClass::Burstable,
        ),
        (
            format!("/kubepods.slice/kubepods-pod{g}.slice/crio-{ID_A}.scope"),
            Runtime::Crio,
            POD_G,
            QosClass::Guaranteed,
        ),
        // kubelet --cgroup-root=/kubelet (kind and friends).
        (
            format!(
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{e}.slice/cri-containerd-{ID_A}.scope"
            ),
            Runtime::Containerd,
            POD_E,
            QosClass::BestEffort,
        ),
        (
            format!(
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{g}.slice/cri-containerd-{ID_A}.scope"
            ),
            Runtime::Containerd,
            POD_G,
            QosClass::Guaranteed,
        ),
    ];
    for (path, runtime, pod, qos) in cases {
        expect_container(&path, runtime, ID_A, Some(pod), Some(qos));
    }
}

#[test]
fn identifies_kubelet_cgroupfs_driver() {
    let static_pod = "6c3b6e2f0d1a4b5c8d9e0f1a2b3c4d5e"; // md5 UID of a static pod
    let cases = [
        (
            format!("/kubepods/pod{POD_G}/{ID_B}"),
            Runtime::Containerd,
            POD_G,
            QosClass::Guaranteed,
        ),
        (
            format!("/kubepods/burstable/pod{POD_B}/{ID_B}"),
            Runtime::Containerd,
            POD_B,
            QosClass::Burstable,
        ),
        (
            format!("/kubepods/besteffort/pod{POD_E}/{ID_B}"),
            Runtime::Containerd,
            POD_E,
            QosClass::BestEffort,
        ),
        (
            format!("/kubepods/burstable/pod{POD_B}/crio-{ID_B}"),
            Runtime::Crio,
            POD_B,
            QosClass::Burstable,
        ),
        (
            format!("/kubepods/besteffort/pod{POD_E}/docker-{ID_B}.scope"),
            Runtime::Docker,
            POD_E,
            QosClass::BestEffort,
        ),
        (
            format!("/kubelet/kubepods/burstable/pod{POD_B}/{ID_B}"),
            Runtime::Containerd,
            POD_B,
            QosClass::Burstable,
        ),
        (
            format!("/kubepods/burstable/pod{static_pod}/{ID_B}"),
            Runtime::Containerd,
            static_pod,
            QosClass::Burstable,
        ),
    ];
    for (path, runtime, pod, qos) in cases {
        expect_container(&path, runtime, ID_B, Some(pod), Some(qos));
    }
}

#[test]
fn identifies_systemd_services() {
    for unit in [
        "ssh.service",
        "containerd.service",
        "docker.service",
        r"systemd-fsck@dev-disk-by\x2duuid-1234.service",
    ] {
        let path = format!("/system.slice/{unit}");
        assert_eq!(
            identify(&path),
            Some(CgroupIdentity {
                cgroup_path: path.clone(),
                runtime: Runtime::Systemd,
                container_id: None,
                pod_uid: None,
                qos: None,
                unit: Some(unit.to_owned()),
            }),
            "{path}"
        );
    }
}

#[test]
fn rejects_what_is_not_a_container_or_service() {
    let short = &ID_A[..63];
    let upper = ID_A.to_uppercase();
    let long = format!("{ID_A}0");
    let g = underscored(POD_G);
    let b = underscored(POD_B);
    let negatives = [
        // Ids that are not exactly 64 lowercase hex.
        format!("/docker/{short}"),
        format!("/docker/{long}"),
        format!("/docker/{upper}"),
        format!("/system.slice/docker-{short}.scope"),
        format!("/system.slice/docker-{upper}.scope"),
        format!("/system.slice/docker-{ID_A}"),
        format!("/kubepods/burstable/pod{POD_B}/{short}"),
        format!("/kubepods/burstable/pod{POD_B}/{ID_A}.scope"),
        format!("/kubepods/burstable/pod{POD_B}/{ID_A}/extra"),
        // conmon scopes.
        format!("/machine.slice/libpod-conmon-{ID_A}.scope"),
        format!("/system.slice/crio-conmon-{ID_A}.scope"),
        format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{b}.slice/crio-conmon-{ID_A}.scope"
        ),
        // Pod and QoS cgroups themselves.
        "/kubepods.slice".to_owned(),
        "/kubepods.slice/kubepods-burstable.slice".to_owned(),
        format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{b}.slice"),
        format!("/kubepods.slice/kubepods-pod{g}.slice"),
        "/kubepods".to_owned(),
        "/kubepods/besteffort".to_owned(),
        format!("/kubepods/besteffort/pod{POD_E}"),
        format!("/kubepods/pod{POD_G}"),
        // QoS slice name not matching the pod slice.
        format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-burstable-pod{b}.slice/cri-containerd-{ID_A}.scope"
        ),
        format!(
            "/kubepods.slice/kubepods-guaranteed.slice/kubepods-guaranteed-pod{g}.slice/cri-containerd-{ID_A}.scope"
        ),
        // Bare ids are not containers under systemd pod slices.
        format!("/kubepods.slice/kubepods-pod{g}.slice/{ID_A}"),
        // Runtime internals below a container.
        format!("/system.slice/docker-{ID_A}.scope/init.scope"),
        format!("/docker/{ID_A}/docker/{ID_B}"),
        format!("/docker/{ID_A}/system.slice/docker-{ID_B}.scope"),
        format!("/kubepods/pod{POD_G}/{ID_A}/{ID_B}"),
        // systemd things that are not services at the top level.
        "/init.scope".to_owned(),
        "/system.slice".to_owned(),
        "/system.slice/.service".to_owned(),
        "/system.slice/session-3.scope".to_owned(),
        "/user.slice/user-1000.slice/session-3.scope".to_owned(),
        "/user.slice/user-1000.slice/user@1000.service".to_owned(),
        "/system.slice/system-getty.slice/getty@tty1.service".to_owned(),
        "/machine.slice/machine-qemu.scope".to_owned(),
        // Malformed paths.
        "/".to_owned(),
        String::new(),
        format!("docker/{ID_A}"),
        format!("/docker//{ID_A}"),
        format!("/docker/{ID_A}/"),
    ];
    for path in negatives {
        assert_eq!(identify(&path), None, "{path}");
    }
}

// ----------------------------------------------------------------- globs

#[test]
fn glob_matching() {
    let g = |p: &str| CgroupGlob::new(p).expect(p);
    let cases: &[(&str, &str, bool)] = &[
        ("/user.slice/**", "/user.slice/user-1000.slice", true),
        (
            "/user.slice/**",
            "/user.slice/user-1000.slice/session-3.scope",
            true,
        ),
        ("/user.slice/**", "/user.slice", false),
        ("/user.slice/**", "/system.slice/ssh.service", false),
        ("/user.slice/*", "/user.slice/user-1000.slice", true),
        (
            "/user.slice/*",
            "/user.slice/user-1000.slice/session-3.scope",
            false,
        ),
        (
            "/user.slice/user-*.slice",
            "/user.slice/user-1000.slice",
            true,
        ),
        ("/user.slice/user-*.slice", "/user.slice/user-.slice", true),
        ("/user.slice/user-?.slice", "/user.slice/user-1.slice", true),
        (
            "/user.slice/user-?.slice",
            "/user.slice/user-10.slice",
            false,
        ),
        (
            "/**/session-*.scope",
            "/user.slice/user-0.slice/session-3.scope",
            true,
        ),
        ("/**/session-*.scope", "/session-1.scope", true),
        ("/a/**/b", "/a/b", true),
        ("/a/**/b", "/a/x/y/b", true),
        ("/a/**/b", "/a/x/y/c", false),
        ("/a/**/b/**", "/a/x/b/y", true),
        ("/a/**/b/**", "/a/x/b", false),
        ("/a/**/**/b", "/a/b", true),
        ("/**", "/anything/at/all", true),
        ("/**", "/", false),
        ("/", "/", true),
        ("/*", "/x", true),
        ("/*", "/x/y", false),
        ("/batch.slice/", "/batch.slice", true),
        ("/batch.slice", "/batch.slice/", true),
        ("/batch.slice", "batch.slice", false),
        ("/*.slice/*.service", "/system.slice/ssh.service", true),
        ("/*.slice/*.service", "/system.slice/ssh.scope", false),
    ];
    for (pattern, path, expected) in cases {
        assert_eq!(g(pattern).matches(path), *expected, "{pattern} vs {path}");
    }
    assert_eq!(g("/user.slice/**").as_str(), "/user.slice/**");
}

#[test]
fn glob_errors() {
    assert_eq!(CgroupGlob::new(""), Err(GlobError::Empty));
    assert!(matches!(
        CgroupGlob::new("user.slice/**"),
        Err(GlobError::NotAbsolute(_))
    ));
    assert!(matches!(
        CgroupGlob::new("/a//b"),
        Err(GlobError::EmptySegment(_))
    ));
    assert!(matches!(
        CgroupGlob::new("/a**"),
        Err(GlobError::PartialDeep(_))
    ));
    assert!(matches!(
        CgroupGlob::new("/[ab]"),
        Err(GlobError::Unsupported(_, '['))
    ));
    let msg = CgroupGlob::new("user.slice")
        .expect_err("relative")
        .to_string();
    assert!(
        msg.contains("user.slice") && msg.contains("start with `/`"),
        "{msg}"
    );
}

// -------------------------------------------------------------- discover

/// Builds a cgroup tree: directories from `dirs`, and in every directory
/// the control files a real hierarchy has (which discovery must skip).
fn tree(root: &Path, dirs: &[&str]) {
    let files = ["cgroup.procs", "cgroup.controllers", "memory.stat", "tasks"];
    for f in files {
        fs::write(root.join(f), "").expect("write");
    }
    for dir in dirs {
        let path = root.join(dir.trim_start_matches('/'));
        fs::create_dir_all(&path).expect("mkdir");
        for f in files {
            fs::write(path.join(f), "").expect("write");
        }
    }
}

fn paths(found: &[CgroupIdentity]) -> Vec<&str> {
    found.iter().map(|i| i.cgroup_path.as_str()).collect()
}

#[test]
fn discovers_v2_systemd_host_with_kubelet_pods() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let g = underscored(POD_G);
    let b = underscored(POD_B);
    let e = underscored(POD_E);
    let pod_g = format!("/kubepods.slice/kubepods-pod{g}.slice");
    let pod_b = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{b}.slice");
    let pod_e =
        format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{e}.slice");
    let dirs = [
        "/init.scope".to_owned(),
        "/system.slice/containerd.service".to_owned(),
        "/system.slice/kubelet.service".to_owned(),
        "/system.slice/systemd-journald.service".to_owned(),
        format!("/system.slice/docker-{ID_C}.scope/inner"),
        "/user.slice/user-1000.slice/session-3.scope".to_owned(),
        "/user.slice/user-1000.slice/user@1000.service/app.slice".to_owned(),
        format!("{pod_g}/cri-containerd-{ID_A}.scope"),
        format!("{pod_g}/cri-containerd-{ID_B}.scope"),
        format!("{pod_b}/cri-containerd-{ID_A}.scope/some/runtime/internal"),
        format!("{pod_b}/crio-conmon-{ID_B}.scope"),
        format!("{pod_e}/cri-containerd-{ID_C}.scope"),
    ];
    let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
    tree(tmp.path(), &dirs);
    // A regular file that looks like a container must not be listed.
    fs::write(
        tmp.path().join(format!("system.slice/docker-{ID_A}.scope")),
        "",
    )
    .expect("write");

    let h = hierarchies(CgroupLayout::V2, tmp.path().to_str(), &[]);
    let found = discover(&h, &[]).expect("discovers");
    let expected = vec![
        format!("{pod_e}/cri-containerd-{ID_C}.scope"),
        format!("{pod_b}/cri-containerd-{ID_A}.scope"),
        format!("{pod_g}/cri-containerd-{ID_A}.scope"),
        format!("{pod_g}/cri-containerd-{ID_B}.scope"),
        "/system.slice/containerd.service".to_owned(),
        format!("/system.slice/docker-{ID_C}.scope"),
        "/system.slice/kubelet.service".to_owned(),
        "/system.slice/systemd-journald.service".to_owned(),
    ];
    assert_eq!(paths(&found), expected);
    assert_eq!(found[0].qos, Some(QosClass::BestEffort));
    assert_eq!(found[0].pod_uid.as_deref(), Some(POD_E));
    assert_eq!(found[1].qos, Some(QosClass::Burstable));
    assert_eq!(found[1].pod_uid.as_deref(), Some(POD_B));
    assert_eq!(found[2].qos, Some(QosClass::Guaranteed));
    assert_eq!(found[5].runtime, Runtime::Docker);
    assert_eq!(found[6].unit.as_deref(), Some("kubelet.service"));

    // A glob adds the user's cgroups (but never overrides an identity).
    let globs = [
        CgroupGlob::new("/user.slice/**").expect("glob"),
        CgroupGlob::new("/system.slice/*").expect("glob"),
    ];
    let found = discover(&h, &globs).expect("discovers");
    let user: Vec<&CgroupIdentity> = found
        .iter()
        .filter(|i| i.runtime == Runtime::Cgroup)
        .collect();
    assert_eq!(
        user.iter()
            .map(|i| i.cgroup_path.as_str())
            .collect::<Vec<_>>(),
        [
            "/user.slice/user-1000.slice",
            "/user.slice/user-1000.slice/session-3.scope",
            "/user.slice/user-1000.slice/user@1000.service",
            "/user.slice/user-1000.slice/user@1000.service/app.slice",
        ]
    );
    assert!(
        user.iter()
            .all(|i| i.container_id.is_none() && i.unit.is_none())
    );
    assert_eq!(found.len(), expected.len() + user.len());
}

#[test]
fn discovers_v1_cgroupfs_docker_host() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let memory = tmp.path().join("memory");
    let cpu = tmp.path().join("cpu,cpuacct");
    fs::create_dir_all(&cpu).expect("mkdir");
    fs::create_dir_all(&memory).expect("mkdir");
    let dirs = [
        format!("/docker/{ID_A}"),
        format!("/docker/{ID_B}"),
        "/docker/not-a-container".to_owned(),
        format!("/docker/{}", &ID_C[..12]),
        "/system.slice/docker.service".to_owned(),
        "/system.slice/sshd.service".to_owned(),
        "/user.slice".to_owned(),
        format!("/kubepods/burstable/pod{POD_B}/{ID_C}"),
        format!("/kubepods/pod{POD_G}/{ID_A}"),
    ];
    let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
    tree(&memory, &dirs);
    // v1 hierarchies carry extra control files at the root.
    for f in [
        "cgroup.clone_children",
        "cgroup.sane_behavior",
        "release_agent",
        "notify_on_release",
    ] {
        fs::write(memory.join(f), "").expect("write");
    }

    let h = hierarchies(
        CgroupLayout::V1,
        None,
        &[
            ("cpu", cpu.to_str().expect("utf8")),
            ("cpuacct", cpu.to_str().expect("utf8")),
            ("memory", memory.to_str().expect("utf8")),
        ],
    );
    assert_eq!(h.primary(), Some(memory.as_path()));
    let found = discover(&h, &[]).expect("discovers");
    assert_eq!(
        paths(&found),
        [
            format!("/docker/{ID_A}"),
            format!("/docker/{ID_B}"),
            format!("/kubepods/burstable/pod{POD_B}/{ID_C}"),
            format!("/kubepods/pod{POD_G}/{ID_A}"),
            "/system.slice/docker.service".to_owned(),
            "/system.slice/sshd.service".to_owned(),
        ]
    );
    assert_eq!(found[0].runtime, Runtime::Docker);
    assert_eq!(found[2].runtime, Runtime::Containerd);
    assert_eq!(found[2].pod_uid.as_deref(), Some(POD_B));
    assert_eq!(found[3].qos, Some(QosClass::Guaranteed));
}

#[test]
fn discovers_services_on_a_host_without_containers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    tree(
        tmp.path(),
        &[
            "/init.scope",
            "/system.slice/cron.service",
            "/system.slice/nginx.service",
            "/system.slice/system-getty.slice/getty@tty1.service",
            "/system.slice/run-r1234.scope",
            "/user.slice/user-0.slice/session-1.scope",
        ],
    );
    let h = hierarchies(CgroupLayout::V2, tmp.path().to_str(), &[]);
    let found = discover(&h, &[]).expect("discovers");
    assert_eq!(
        paths(&found),
        ["/system.slice/cron.service", "/system.slice/nginx.service"]
    );
    assert!(found.iter().all(|i| i.runtime == Runtime::Systemd));
}

#[test]
fn discovery_stops_at_max_depth() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let deep: String = (0..MAX_DEPTH + 3).map(|i| format!("/d{i}")).collect();
    tree(tmp.path(), &[deep.as_str()]);
    let h = hierarchies(CgroupLayout::V2, tmp.path().to_str(), &[]);
    let found = discover(&h, &[CgroupGlob::new("/**").expect("glob")]).expect("discovers");
    assert_eq!(found.len(), MAX_DEPTH);
    let deepest: String = (0..MAX_DEPTH).map(|i| format!("/d{i}")).collect();
    assert_eq!(
        found.last().map(|i| i.cgroup_path.as_str()),
        Some(deepest.as_str())
    );
}

#[test]
fn unreadable_root_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("gone");
    let h = hierarchies(CgroupLayout::V2, missing.to_str(), &[]);
    let err = discover(&h, &[]).expect_err("missing root");
    assert!(matches!(err, DiscoverError::ReadRoot { .. }), "{err:?}");
    assert!(err.to_string().contains(&missing.display().to_string()));

    let none = hierarchies(CgroupLayout::V2, None, &[]);
    assert!(matches!(
        discover(&none, &[]),
        Err(DiscoverError::NoPrimaryHierarchy)
    ));
}

#[test]
fn discovers_this_host() {
    let h = detect(&HostRoot::default()).expect("this host has cgroups");
    let found = discover(&h, &[CgroupGlob::new("/**").expect("glob")]).expect("walks");
    let sorted = found
        .windows(2)
        .all(|w| w[0].cgroup_path < w[1].cgroup_path);
    assert!(sorted, "sorted by path");
}

// ------------------------------------------------------------- proptests

proptest! {
    #[test]
    fn identify_never_panics(s in "\\PC*", t in "(/[a-z0-9._@-]{0,70}){0,8}") {
        let _ = identify(&s);
        let _ = identify(&format!("/{s}"));
        let _ = identify(&t);
    }

    #[test]
    fn parse_mountinfo_never_panics(s in "\\PC*", lines in proptest::collection::vec("[0-9a-z:/ ,=\\\\-]{0,80}", 0..8)) {
        let _ = parse_mountinfo(&s);
        let text = lines.join("\n");
        if let Ok(mounts) = parse_mountinfo(&text) {
            let _ = hierarchies_from_mounts(&mounts);
        }
    }

    #[test]
    fn globs_never_panic(p in "/[a-z*?/]{0,20}", s in "(/[a-zé?*]{0,6}){0,6}") {
        if let Ok(g) = CgroupGlob::new(&p) {
            let _ = g.matches(&s);
        }
    }

    #[test]
    fn kube_containers_round_trip(
        id in "[0-9a-f]{64}",
        uid in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        qos in 0..3usize,
    ) {
        let (slices, class) = match qos {
            0 => (String::new(), QosClass::Guaranteed),
            1 => ("kubepods-burstable.slice/kubepods-burstable-".to_owned(), QosClass::Burstable),
            _ => ("kubepods-besteffort.slice/kubepods-besteffort-".to_owned(), QosClass::BestEffort),
        };
        let pod = if slices.is_empty() { "kubepods-".to_owned() } else { slices };
        let path = format!("/kubepods.slice/{pod}pod{}.slice/cri-containerd-{id}.scope", uid.replace('-', "_"));
        let got = identify(&path).expect("a container");
        prop_assert_eq!(got.container_id.as_deref(), Some(id.as_str()));
        prop_assert_eq!(got.pod_uid.as_deref(), Some(uid.as_str()));
        prop_assert_eq!(got.qos, Some(class));
    }
}

/// Reference glob semantics, written the slow obvious way (recursion over
/// segments and characters), to check the matcher against.
fn reference_glob(pattern: &str, path: &str) -> Option<bool> {
    fn seg(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len()).any(|i| seg(rest, &s[i..])),
            Some(('?', rest)) => !s.is_empty() && seg(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && seg(rest, &s[1..]),
        }
    }
    fn segs(p: &[&str], s: &[&str]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((&"**", rest)) => (0..=s.len()).any(|i| segs(rest, &s[i..])),
            Some((first, rest)) => {
                let pc: Vec<char> = first.chars().collect();
                s.first()
                    .is_some_and(|f| seg(&pc, &f.chars().collect::<Vec<_>>()))
                    && segs(rest, &s[1..])
            }
        }
    }
    let p = pattern.strip_prefix('/')?;
    let s = path.strip_prefix('/')?;
    let split = |x: &str| -> Vec<String> {
        if x.is_empty() {
            Vec::new()
        } else {
            x.split('/').map(str::to_owned).collect()
        }
    };
    let mut ps = split(p);
    // Trailing `**`: at least one segment below.
    if ps.last().is_some_and(|l| l == "**") {
        ps.pop();
        ps.push("*".to_owned());
        ps.push("**".to_owned());
    }
    let ps: Vec<&str> = ps.iter().map(String::as_str).collect();
    let ss = split(s);
    let ss: Vec<&str> = ss.iter().map(String::as_str).collect();
    Some(segs(&ps, &ss))
}

proptest! {
    #[test]
    fn glob_agrees_with_reference(
        p in "(/(\\*\\*|[ab*?]{1,4})){0,5}",
        s in "(/[ab]{1,4}){0,6}",
    ) {
        let p = if p.is_empty() { "/".to_owned() } else { p };
        let s = if s.is_empty() { "/".to_owned() } else { s };
        let g = match CgroupGlob::new(&p) {
            Ok(g) => g,
            Err(GlobError::PartialDeep(_)) => return Ok(()),
            Err(e) => panic!("{p}: {e}"),
        };
        prop_assert_eq!(Some(g.matches(&s)), reference_glob(&p, &s), "{} vs {}", p, s);
    }
}
