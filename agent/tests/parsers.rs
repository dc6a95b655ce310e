//! Cgroup file parsers and the cgroup reader, tested on verbatim kernel
//! files (`fixtures/`), on temp-dir trees that mimic v1, v2 and hybrid
//! hosts, and on this machine's real kernel.
//!
//! Fixtures: `fixtures/v1/*` were captured on a 6.18 hybrid host
//! (`cat /sys/fs/cgroup/<ctrl>/...`); `fixtures/hybrid/*` are that host's
//! cgroup2 files (`/sys/fs/cgroup/unified`, core `cpu.stat` and PSI);
//! `fixtures/v2/*` follow the 6.x kernel format and field order.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use upid::model::{
    CgroupLayout, CgroupStats, CpuStats, IoStats, MemoryStats, PeakSource, PidsStats, Pressure,
    PressureStats,
};
use upid_agent::cgroup::Hierarchies;
use upid_agent::cgroup::parse::{self, BlkioTotals, CpuacctStat, ParseError};
use upid_agent::cgroup::reader::{CgroupReader, ReadError, ReaderOptions};
use upid_agent::skips::Skips;

macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $path
        ))
        .as_slice()
    };
}

/// Every fixture, for the truncation properties.
const FIXTURES: &[&[u8]] = &[
    fixture!("v1/memory.stat"),
    fixture!("v1/cpu.stat"),
    fixture!("v1/cpuacct.stat"),
    fixture!("v1/cpuacct.usage"),
    fixture!("v1/memory.oom_control"),
    fixture!("v1/memory.limit_in_bytes"),
    fixture!("v1/memory.usage_in_bytes"),
    fixture!("v1/memory.max_usage_in_bytes"),
    fixture!("v1/blkio.throttle.io_service_bytes"),
    fixture!("v1/blkio.throttle.io_service_bytes.root"),
    fixture!("v1/blkio.throttle.io_service_bytes.empty"),
    fixture!("v1/blkio.throttle.io_serviced"),
    fixture!("v1/cpu.cfs_quota_us"),
    fixture!("v1/cpu.cfs_period_us"),
    fixture!("v1/cpu.shares"),
    fixture!("v1/pids.current"),
    fixture!("v1/pids.max"),
    fixture!("v1/cgroup.procs"),
    fixture!("hybrid/cpu.pressure"),
    fixture!("hybrid/io.pressure"),
    fixture!("hybrid/memory.pressure"),
    fixture!("hybrid/cpu.stat"),
    fixture!("v2/memory.stat"),
    fixture!("v2/cpu.stat"),
    fixture!("v2/io.stat"),
    fixture!("v2/memory.events"),
    fixture!("v2/cpu.max"),
    fixture!("v2/cpu.max.unlimited"),
    fixture!("v2/cpu.weight"),
    fixture!("v2/cpu.pressure"),
    fixture!("v2/cpu.pressure.no-full"),
    fixture!("v2/memory.pressure"),
    fixture!("v2/io.pressure"),
    fixture!("v2/memory.max"),
    fixture!("v2/memory.current"),
];

// ---------------------------------------------------------------------------
// Fixtures → exact values
// ---------------------------------------------------------------------------

#[test]
fn v1_memory_stat() {
    let keys = [
        "total_rss",
        "total_cache",
        "total_inactive_file",
        "total_swap",
        "rss",
        "swap",
        "absent_key",
    ];
    let got = parse::parse_flat_keys(fixture!("v1/memory.stat"), &keys).expect("parses");
    assert_eq!(
        got,
        [
            Some(41_431_040),
            Some(161_296_384),
            Some(140_148_736),
            Some(0),
            Some(5_046_272),
            Some(0),
            None
        ]
    );
    // `hierarchical_memory_limit` is the v1 "unlimited" value.
    let [limit] =
        parse::parse_flat_keys(fixture!("v1/memory.stat"), &["hierarchical_memory_limit"])
            .expect("parses");
    assert_eq!(limit.and_then(parse::v1_limit), None);
}

#[test]
fn v1_single_values() {
    assert_eq!(
        parse::parse_single_u64(fixture!("v1/cpuacct.usage")),
        Ok(184_170_880_362)
    );
    assert_eq!(
        parse::parse_single_u64(fixture!("v1/memory.usage_in_bytes")),
        Ok(202_551_296)
    );
    assert_eq!(
        parse::parse_single_u64(fixture!("v1/memory.max_usage_in_bytes")),
        Ok(1_888_702_464)
    );
    assert_eq!(
        parse::parse_v1_limit_bytes(fixture!("v1/memory.limit_in_bytes")),
        Ok(None)
    );
    assert_eq!(
        parse::parse_single_i64(fixture!("v1/cpu.cfs_quota_us")),
        Ok(-1)
    );
    assert_eq!(
        parse::parse_single_u64(fixture!("v1/cpu.cfs_period_us")),
        Ok(100_000)
    );
    assert_eq!(parse::cfs_millicores(-1, 100_000), Ok(None));
    assert_eq!(parse::parse_single_u64(fixture!("v1/cpu.shares")), Ok(1024));
    assert_eq!(parse::parse_single_u64(fixture!("v1/pids.current")), Ok(2));
    assert_eq!(parse::parse_limit(fixture!("v1/pids.max")), Ok(None));
    assert_eq!(
        parse::parse_limit(fixture!("v1/pids.max.limited")),
        Ok(Some(20))
    );
    assert_eq!(
        parse::parse_first_pid(fixture!("v1/cgroup.procs")),
        Ok(Some(11_504))
    );
}

#[test]
fn v1_cpu_stat_and_cpuacct_stat() {
    assert_eq!(
        parse::parse_flat_keys(
            fixture!("v1/cpu.stat"),
            &["nr_periods", "nr_throttled", "throttled_time"]
        ),
        Ok([Some(0), Some(0), Some(0)])
    );
    let throttled = b"nr_periods 5311\nnr_throttled 2011\nthrottled_time 73419386541\nnr_bursts 0\nburst_time 0\n";
    assert_eq!(
        parse::parse_required_keys(throttled, &["nr_periods", "nr_throttled", "throttled_time"]),
        Ok([5311, 2011, 73_419_386_541])
    );
    assert_eq!(
        parse::parse_cpuacct_stat(fixture!("v1/cpuacct.stat")),
        Ok(CpuacctStat {
            user_ns: 139_600_000_000,
            system_ns: 44_560_000_000
        })
    );
    assert_eq!(parse::ticks_to_ns(1), 10_000_000);
    assert_eq!(
        parse::parse_cpuacct_stat(b"user 5\n"),
        Err(ParseError::MissingKey("system"))
    );
}

#[test]
fn v1_oom_control() {
    let keys = ["oom_kill_disable", "under_oom", "oom_kill"];
    assert_eq!(
        parse::parse_flat_keys(fixture!("v1/memory.oom_control"), &keys),
        Ok([Some(0), Some(0), Some(0)])
    );
    // Kernels before 4.13 have no `oom_kill` line.
    assert_eq!(
        parse::parse_flat_keys(b"oom_kill_disable 0\nunder_oom 0\n", &["oom_kill"]),
        Ok([None])
    );
}

#[test]
fn v1_blkio() {
    assert_eq!(
        parse::parse_blkio(fixture!("v1/blkio.throttle.io_service_bytes")),
        Ok(BlkioTotals {
            read: 807_444_480,
            write: 61_440
        })
    );
    assert_eq!(
        parse::parse_blkio(fixture!("v1/blkio.throttle.io_serviced")),
        Ok(BlkioTotals {
            read: 3893,
            write: 16
        })
    );
    assert_eq!(
        parse::parse_blkio(fixture!("v1/blkio.throttle.io_service_bytes.root")),
        Ok(BlkioTotals {
            read: 56_524_800,
            write: 94_208
        })
    );
    assert_eq!(
        parse::parse_blkio(fixture!("v1/blkio.throttle.io_service_bytes.empty")),
        Ok(BlkioTotals::default())
    );
    // Two devices (same format, composed): summed, totals not counted.
    let two = b"8:0 Read 100\n8:0 Write 10\n8:0 Sync 110\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 110\n\
                8:16 Read 1\n8:16 Write 2\n8:16 Sync 3\n8:16 Async 0\n8:16 Discard 0\n8:16 Total 3\nTotal 113\n";
    assert_eq!(
        parse::parse_blkio(two),
        Ok(BlkioTotals {
            read: 101,
            write: 12
        })
    );
    assert!(parse::parse_blkio(b"8:0 Read\n").is_err());
    assert!(parse::parse_blkio(b"Total x\n").is_err());
}

#[test]
fn hybrid_unified_files() {
    assert_eq!(
        parse::parse_pressure(fixture!("hybrid/cpu.pressure")),
        Ok(PressureStats {
            some_total_us: 12_540_034,
            full_total_us: Some(0)
        })
    );
    assert_eq!(
        parse::parse_pressure(fixture!("hybrid/io.pressure")),
        Ok(PressureStats {
            some_total_us: 4_696_023,
            full_total_us: Some(4_492_493)
        })
    );
    assert_eq!(
        parse::parse_pressure(fixture!("hybrid/memory.pressure")),
        Ok(PressureStats {
            some_total_us: 0,
            full_total_us: Some(0)
        })
    );
    // A cgroup2 without the cpu controller has only the core cpu.stat keys.
    assert_eq!(
        parse::parse_flat_keys(
            fixture!("hybrid/cpu.stat"),
            &["usage_usec", "user_usec", "system_usec", "nr_periods"]
        ),
        Ok([Some(177_170_058), Some(134_291_346), Some(42_878_711), None])
    );
}

#[test]
fn v2_files() {
    assert_eq!(
        parse::parse_required_keys(
            fixture!("v2/memory.stat"),
            &["anon", "file", "inactive_file"]
        ),
        Ok([110_465_024, 537_083_904, 402_653_184])
    );
    assert_eq!(
        parse::parse_required_keys(
            fixture!("v2/cpu.stat"),
            &[
                "usage_usec",
                "user_usec",
                "system_usec",
                "nr_periods",
                "nr_throttled",
                "throttled_usec"
            ]
        ),
        Ok([
            8_123_456_789,
            6_012_345_678,
            2_111_111_111,
            345_678,
            1234,
            98_765_432
        ])
    );
    assert_eq!(
        parse::parse_io_stat(fixture!("v2/io.stat")),
        Ok(IoStats {
            read_bytes: 5_251_072 + 1_048_576,
            write_bytes: 1_069_056 + 8192,
            read_ops: 339 + 12,
            write_ops: 118 + 2
        })
    );
    assert_eq!(parse::parse_io_stat(b""), Ok(IoStats::default()));
    assert_eq!(
        parse::parse_flat_keys(fixture!("v2/memory.events"), &["oom_kill", "oom", "max"]),
        Ok([Some(2), Some(3), Some(27)])
    );
    assert_eq!(parse::parse_cpu_max(fixture!("v2/cpu.max")), Ok(Some(500)));
    assert_eq!(
        parse::parse_cpu_max(fixture!("v2/cpu.max.unlimited")),
        Ok(None)
    );
    assert_eq!(
        parse::parse_cpu_weight_as_shares(fixture!("v2/cpu.weight")),
        Ok(2598)
    );
    assert_eq!(parse::shares_to_weight(2598), 100);
    assert_eq!(parse::parse_limit(fixture!("v2/memory.max")), Ok(None));
    assert_eq!(
        parse::parse_limit(fixture!("v2/memory.max.limited")),
        Ok(Some(536_870_912))
    );
    assert_eq!(
        parse::parse_pressure(fixture!("v2/cpu.pressure")),
        Ok(PressureStats {
            some_total_us: 48_251_983,
            full_total_us: Some(20_116_472)
        })
    );
    assert_eq!(
        parse::parse_pressure(fixture!("v2/cpu.pressure.no-full")),
        Ok(PressureStats {
            some_total_us: 1_834_920,
            full_total_us: None
        })
    );
    assert_eq!(
        parse::parse_pressure(fixture!("v2/io.pressure")),
        Ok(PressureStats {
            some_total_us: 3_372_015,
            full_total_us: Some(3_206_448)
        })
    );
}

#[test]
fn io_stat_ignores_unknown_keys_and_rejects_garbage() {
    // io.cost debug output adds keys with non-integer values.
    let input =
        b"8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0 cost.vrate=100.00 cost.usage=5\n";
    assert_eq!(
        parse::parse_io_stat(input),
        Ok(IoStats {
            read_bytes: 10,
            write_bytes: 20,
            read_ops: 1,
            write_ops: 2
        })
    );
    assert!(parse::parse_io_stat(b"8:0 rbytes\n").is_err());
    assert!(parse::parse_io_stat(b"rbytes=1\n").is_err());
    assert!(parse::parse_io_stat(b"8:0 rbytes=x\n").is_err());
}

#[test]
fn errors_say_what_was_wrong() {
    let e = parse::parse_single_u64(b"12a\n").expect_err("not a number");
    assert_eq!(e.to_string(), "`12a` is not an unsigned 64-bit integer");
    let e = parse::parse_pressure(b"full avg10=0.00 total=1\n").expect_err("no some");
    assert_eq!(e.to_string(), "missing key `some`");
    let e = parse::parse_pressure(b"some avg10=0.00\n").expect_err("no total");
    assert!(e.to_string().contains("no `total=` field"), "{e}");
    let e = parse::parse_flat_keys(b"x 1\nanon\n", &["anon"]).expect_err("no value");
    assert!(
        e.to_string().starts_with("line 2: key without a value"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------
// Properties: no input makes a parser panic
// ---------------------------------------------------------------------------

/// Runs every parser on `input`; each returns `Ok` or a typed `ParseError`
/// whose message renders.
fn run_all_parsers(input: &[u8]) {
    fn check<T>(r: Result<T, ParseError>) {
        if let Err(e) = r {
            assert!(!e.to_string().is_empty());
        }
    }
    check(parse::parse_single_u64(input));
    check(parse::parse_single_i64(input));
    check(parse::parse_limit(input));
    check(parse::parse_v1_limit_bytes(input));
    check(parse::parse_flat_keys(
        input,
        &["total_rss", "anon", "oom_kill", "usage_usec"],
    ));
    check(parse::parse_required_keys(
        input,
        &["nr_periods", "nr_throttled"],
    ));
    check(parse::parse_io_stat(input));
    check(parse::parse_blkio(input));
    check(parse::parse_pressure(input));
    check(parse::parse_cpu_max(input));
    check(parse::parse_cpu_weight_as_shares(input));
    check(parse::parse_cpuacct_stat(input));
    check(parse::parse_first_pid(input));
}

#[test]
fn every_truncated_fixture_parses_or_errors() {
    for f in FIXTURES {
        for end in 0..=f.len() {
            run_all_parsers(f.get(..end).expect("in range"));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        run_all_parsers(&input);
    }

    #[test]
    fn cgroup_like_text_never_panics(input in "[a-z0-9_:=. \\-\\t\\n]{0,300}") {
        run_all_parsers(input.as_bytes());
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0..FIXTURES.len(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut f = FIXTURES.get(which).copied().unwrap_or_default().to_vec();
        if !f.is_empty() {
            let i = flip.index(f.len());
            if let Some(b) = f.get_mut(i) {
                *b = byte;
            }
            f.truncate(cut.index(f.len() + 1));
        }
        run_all_parsers(&f);
    }

    #[test]
    fn weight_to_shares_inverts_the_kubernetes_formula(w in 1u64..=10_000) {
        prop_assert_eq!(parse::shares_to_weight(parse::weight_to_shares(w)), w);
    }
}

// ---------------------------------------------------------------------------
// Reader on temp-dir trees
// ---------------------------------------------------------------------------

const CONTAINER: &str =
    "/system.slice/docker-0f5c3a1e9d7b4c2a8e6f1d3b5a7c9e0f2d4b6a8c1e3f5a7b9d0c2e4f6a8b0c1d.scope";

fn put(dir: &Path, name: &str, contents: &[u8]) {
    fs::create_dir_all(dir).expect("mkdir");
    fs::write(dir.join(name), contents).expect("write fixture");
}

/// A v2 host: the unified hierarchy at `<tmp>/sys/fs/cgroup` with one
/// container cgroup holding the v2 fixtures. `memory.peak` starts short so
/// the reader's first-read reset (`"0\n"` written at offset 0) leaves a
/// valid file in this plain-file imitation.
fn v2_host(tmp: &Path) -> (Hierarchies, PathBuf) {
    let root = tmp.join("sys/fs/cgroup");
    put(
        &root,
        "cgroup.controllers",
        b"cpuset cpu io memory hugetlb pids rdma misc\n",
    );
    let dir = Hierarchies::join(&root, CONTAINER);
    for (name, contents) in [
        ("cpu.stat", fixture!("v2/cpu.stat")),
        ("cpu.max", fixture!("v2/cpu.max")),
        ("cpu.weight", fixture!("v2/cpu.weight")),
        ("memory.current", fixture!("v2/memory.current")),
        ("memory.stat", fixture!("v2/memory.stat")),
        ("memory.max", fixture!("v2/memory.max.limited")),
        ("memory.swap.current", fixture!("v2/memory.swap.current")),
        ("memory.events", fixture!("v2/memory.events")),
        ("memory.peak", b"9\n".as_slice()),
        ("io.stat", fixture!("v2/io.stat")),
        ("pids.current", fixture!("v2/pids.current")),
        ("pids.max", fixture!("v2/pids.max")),
        ("cpu.pressure", fixture!("v2/cpu.pressure")),
        ("memory.pressure", fixture!("v2/memory.pressure")),
        ("io.pressure", fixture!("v2/io.pressure")),
        ("cgroup.procs", b"4242\n4243\n".as_slice()),
    ] {
        put(&dir, name, contents);
    }
    let h = Hierarchies {
        layout: CgroupLayout::V2,
        unified: Some(root),
        v1: BTreeMap::new(),
    };
    (h, dir)
}

fn v2_expected_cpu() -> CpuStats {
    CpuStats {
        usage_ns: 8_123_456_789_000,
        user_ns: Some(6_012_345_678_000),
        system_ns: Some(2_111_111_111_000),
        periods: 345_678,
        throttled_periods: 1234,
        throttled_ns: 98_765_432_000,
        limit_millicores: Some(500),
        shares: Some(2598),
    }
}

fn v2_expected(peak_bytes: u64, peak_source: PeakSource) -> CgroupStats {
    CgroupStats {
        cpu: Some(v2_expected_cpu()),
        memory: Some(MemoryStats {
            usage_bytes: 647_548_928,
            working_set_bytes: 647_548_928 - 402_653_184,
            rss_bytes: 110_465_024,
            cache_bytes: 537_083_904,
            swap_bytes: Some(0),
            limit_bytes: Some(536_870_912),
            peak_bytes,
            peak_source,
            oom_kills: 2,
        }),
        io: Some(IoStats {
            read_bytes: 6_299_648,
            write_bytes: 1_077_248,
            read_ops: 351,
            write_ops: 120,
        }),
        pids: Some(PidsStats {
            current: 7,
            limit: None,
        }),
        pressure: Some(Pressure {
            cpu: Some(PressureStats {
                some_total_us: 48_251_983,
                full_total_us: Some(20_116_472),
            }),
            memory: Some(PressureStats {
                some_total_us: 912_344,
                full_total_us: Some(704_210),
            }),
            io: Some(PressureStats {
                some_total_us: 3_372_015,
                full_total_us: Some(3_206_448),
            }),
        }),
    }
}

#[test]
fn v2_reader_reads_everything_and_resets_the_peak() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dir) = v2_host(tmp.path());
    let mut reader = CgroupReader::new(&h, CONTAINER, &ReaderOptions::default());
    let (mut buf, mut skips) = (Vec::new(), Skips::default());

    // First read: the peak is reset before it is read, so it is the usage.
    let stats = reader.read(&mut buf, &mut skips).expect("reads");
    assert_eq!(stats, v2_expected(647_548_928, PeakSource::KernelReset));
    assert_eq!(skips.malformed_count(), 0);

    // A task ran (the CPU counter moved) and reached a higher peak since
    // the reset; the reader reads it and resets it again.
    let cpu_stat = String::from_utf8_lossy(fixture!("v2/cpu.stat"))
        .replace("usage_usec 8123456789", "usage_usec 8123456790");
    fs::write(dir.join("cpu.stat"), cpu_stat).expect("write");
    fs::write(dir.join("memory.peak"), b"812453888\n").expect("write");
    let stats = reader.read(&mut buf, &mut skips).expect("reads");
    let mut want = v2_expected(812_453_888, PeakSource::KernelReset);
    if let Some(cpu) = &mut want.cpu {
        cpu.usage_ns += 1_000;
    }
    assert_eq!(stats, want);
    let peak_after = fs::read(dir.join("memory.peak")).expect("read");
    assert!(
        peak_after.starts_with(b"0\n"),
        "reset written: {peak_after:?}"
    );
    assert_eq!(skips.malformed_count(), 0);

    assert_eq!(reader.first_pid(&mut buf), Some(4242));
}

#[test]
fn v2_reader_without_peak_or_pressure_samples() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dir) = v2_host(tmp.path());
    for f in [
        "memory.peak",
        "cpu.pressure",
        "memory.pressure",
        "io.pressure",
        "memory.swap.current",
    ] {
        fs::remove_file(dir.join(f)).expect("rm");
    }
    fs::write(dir.join("cgroup.procs"), b"").expect("write");
    let mut reader = CgroupReader::new(&h, CONTAINER, &ReaderOptions::default());
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    let mut want = v2_expected(647_548_928, PeakSource::Sampled);
    want.pressure = None;
    if let Some(m) = want.memory.as_mut() {
        m.swap_bytes = None;
    }
    for _ in 0..2 {
        assert_eq!(reader.read(&mut buf, &mut skips).expect("reads"), want);
    }
    assert_eq!(skips.malformed_count(), 0);
    assert_eq!(reader.first_pid(&mut buf), None);
}

#[test]
fn v2_reader_with_resets_disabled_leaves_memory_peak_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dir) = v2_host(tmp.path());
    fs::write(dir.join("memory.peak"), b"812453888\n").expect("write");
    let mut reader = CgroupReader::new(&h, CONTAINER, &ReaderOptions { reset_peaks: false });
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    let stats = reader.read(&mut buf, &mut skips).expect("reads");
    assert_eq!(stats, v2_expected(647_548_928, PeakSource::Sampled));
    assert_eq!(
        fs::read(dir.join("memory.peak")).expect("read"),
        b"812453888\n"
    );
}

#[test]
fn v2_controller_not_enabled_is_none_not_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dir) = v2_host(tmp.path());
    // Only the core files: no cpu/memory/io/pids controller enabled.
    for f in [
        "cpu.max",
        "cpu.weight",
        "memory.current",
        "memory.stat",
        "memory.max",
        "memory.swap.current",
        "memory.events",
        "memory.peak",
        "io.stat",
        "pids.current",
        "pids.max",
    ] {
        fs::remove_file(dir.join(f)).expect("rm");
    }
    fs::write(dir.join("cpu.stat"), fixture!("hybrid/cpu.stat")).expect("write");
    let mut reader = CgroupReader::new(&h, CONTAINER, &ReaderOptions::default());
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    let stats = reader.read(&mut buf, &mut skips).expect("reads");
    assert_eq!(
        stats.cpu,
        Some(CpuStats {
            usage_ns: 177_170_058_000,
            user_ns: Some(134_291_346_000),
            system_ns: Some(42_878_711_000),
            ..CpuStats::default()
        })
    );
    assert_eq!((stats.memory, stats.io, stats.pids), (None, None, None));
    assert!(stats.pressure.is_some());
    assert_eq!(skips.malformed_count(), 0);
}

#[test]
fn v2_malformed_memory_stat_drops_only_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dir) = v2_host(tmp.path());
    fs::write(
        dir.join("memory.stat"),
        b"anon 12\nfile twelve\ninactive_file 1\n",
    )
    .expect("write");
    let mut reader = CgroupReader::new(&h, CONTAINER, &ReaderOptions::default());
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    let stats = reader.read(&mut buf, &mut skips).expect("reads");
    assert_eq!(skips.malformed_count(), 1);
    assert_eq!(stats.memory, None);
    let mut want = v2_expected(0, PeakSource::Sampled);
    want.memory = None;
    assert_eq!(stats, want);

    // Fixed on the next tick: memory is back.
    fs::write(dir.join("memory.stat"), fixture!("v2/memory.stat")).expect("write");
    let stats = reader.read(&mut buf, &mut skips).expect("reads");
    assert!(stats.memory.is_some());
    assert_eq!(skips.malformed_count(), 1);
}

#[test]
fn v2_malformed_pressure_drops_only_that_resource() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dir) = v2_host(tmp.path());
    fs::write(dir.join("io.pressure"), b"some avg10=0.00 total=\n").expect("write");
    let mut reader = CgroupReader::new(&h, CONTAINER, &ReaderOptions::default());
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    let stats = reader.read(&mut buf, &mut skips).expect("reads");
    assert_eq!(skips.malformed_count(), 1);
    let p = stats.pressure.expect("cpu and memory pressure remain");
    assert!(p.cpu.is_some() && p.memory.is_some() && p.io.is_none());
    assert!(stats.cpu.is_some() && stats.memory.is_some());
}

#[test]
fn v2_cgroup_removed_is_vanished() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dir) = v2_host(tmp.path());
    let mut reader = CgroupReader::new(&h, CONTAINER, &ReaderOptions::default());
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    fs::remove_dir_all(&dir).expect("rm -r");
    assert_eq!(reader.read(&mut buf, &mut skips), Err(ReadError::Vanished));
    assert_eq!(skips.malformed_count(), 0);
    assert_eq!(reader.first_pid(&mut buf), None);
}

/// A v1 host with split `cpu` and `cpuacct` mounts (as on this machine),
/// plus a unified mount for `hybrid`. Returns the hierarchies and the
/// cgroup's directory per controller.
fn v1_host(tmp: &Path, hybrid: bool) -> (Hierarchies, BTreeMap<&'static str, PathBuf>) {
    let root = tmp.join("sys/fs/cgroup");
    let path = "/docker/5e8b1c0d2f4a6b8c0e2d4f6a8b0c2e4f6a8b0d2f4a6c8e0b2d4f6a8c0e2b4d6f";
    let mut v1 = BTreeMap::new();
    let mut dirs = BTreeMap::new();
    for ctrl in ["cpu", "cpuacct", "memory", "blkio", "pids"] {
        let mount = root.join(ctrl);
        v1.insert(ctrl.to_string(), mount.clone());
        dirs.insert(ctrl, Hierarchies::join(&mount, path));
    }
    let d = |c: &str| dirs.get(c).cloned().expect("controller dir");
    for (name, contents) in [
        ("cpuacct.usage", fixture!("v1/cpuacct.usage")),
        ("cpuacct.stat", fixture!("v1/cpuacct.stat")),
    ] {
        put(&d("cpuacct"), name, contents);
    }
    for (name, contents) in [
        ("cpu.stat", b"nr_periods 5311\nnr_throttled 2011\nthrottled_time 73419386541\nnr_bursts 0\nburst_time 0\n".as_slice()),
        ("cpu.cfs_quota_us", b"150000\n".as_slice()),
        ("cpu.cfs_period_us", fixture!("v1/cpu.cfs_period_us")),
        ("cpu.shares", fixture!("v1/cpu.shares")),
    ] {
        put(&d("cpu"), name, contents);
    }
    for (name, contents) in [
        (
            "memory.usage_in_bytes",
            fixture!("v1/memory.usage_in_bytes"),
        ),
        ("memory.stat", fixture!("v1/memory.stat")),
        (
            "memory.limit_in_bytes",
            fixture!("v1/memory.limit_in_bytes"),
        ),
        ("memory.max_usage_in_bytes", b"9\n".as_slice()),
        ("memory.oom_control", fixture!("v1/memory.oom_control")),
        ("memory.memsw.usage_in_bytes", b"202555392\n".as_slice()),
        ("cgroup.procs", fixture!("v1/cgroup.procs")),
    ] {
        put(&d("memory"), name, contents);
    }
    for (name, contents) in [
        (
            "blkio.throttle.io_service_bytes_recursive",
            fixture!("v1/blkio.throttle.io_service_bytes"),
        ),
        (
            "blkio.throttle.io_service_bytes",
            fixture!("v1/blkio.throttle.io_service_bytes.empty"),
        ),
        (
            "blkio.throttle.io_serviced_recursive",
            fixture!("v1/blkio.throttle.io_serviced"),
        ),
        (
            "blkio.throttle.io_serviced",
            fixture!("v1/blkio.throttle.io_service_bytes.empty"),
        ),
    ] {
        put(&d("blkio"), name, contents);
    }
    for (name, contents) in [
        ("pids.current", fixture!("v1/pids.current")),
        ("pids.max", fixture!("v1/pids.max.limited")),
    ] {
        put(&d("pids"), name, contents);
    }
    let unified = root.join("unified");
    if hybrid {
        let u = Hierarchies::join(&unified, path);
        for (name, contents) in [
            ("cpu.pressure", fixture!("hybrid/cpu.pressure")),
            ("memory.pressure", fixture!("hybrid/memory.pressure")),
            ("io.pressure", fixture!("hybrid/io.pressure")),
            ("cpu.stat", fixture!("hybrid/cpu.stat")),
        ] {
            put(&u, name, contents);
        }
        dirs.insert("unified", u);
    }
    let h = Hierarchies {
        layout: if hybrid {
            CgroupLayout::Hybrid
        } else {
            CgroupLayout::V1
        },
        unified: hybrid.then_some(unified),
        v1,
    };
    (h, dirs)
}

const V1_PATH: &str = "/docker/5e8b1c0d2f4a6b8c0e2d4f6a8b0c2e4f6a8b0d2f4a6c8e0b2d4f6a8c0e2b4d6f";

fn v1_expected(peak_bytes: u64, peak_source: PeakSource) -> CgroupStats {
    CgroupStats {
        cpu: Some(CpuStats {
            usage_ns: 184_170_880_362,
            user_ns: Some(139_600_000_000),
            system_ns: Some(44_560_000_000),
            periods: 5311,
            throttled_periods: 2011,
            throttled_ns: 73_419_386_541,
            limit_millicores: Some(1500),
            shares: Some(1024),
        }),
        memory: Some(MemoryStats {
            usage_bytes: 202_551_296,
            working_set_bytes: 202_551_296 - 140_148_736,
            rss_bytes: 41_431_040,
            cache_bytes: 161_296_384,
            swap_bytes: Some(0),
            limit_bytes: None,
            peak_bytes,
            peak_source,
            oom_kills: 0,
        }),
        io: Some(IoStats {
            read_bytes: 807_444_480,
            write_bytes: 61_440,
            read_ops: 3893,
            write_ops: 16,
        }),
        pids: Some(PidsStats {
            current: 2,
            limit: Some(20),
        }),
        pressure: None,
    }
}

#[test]
fn v1_reader_with_split_cpu_and_cpuacct() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dirs) = v1_host(tmp.path(), false);
    let mem = dirs.get("memory").expect("memory dir");
    let mut reader = CgroupReader::new(&h, V1_PATH, &ReaderOptions::default());
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    let stats = reader.read(&mut buf, &mut skips).expect("reads");
    assert_eq!(stats, v1_expected(202_551_296, PeakSource::KernelReset));
    assert_eq!(skips.malformed_count(), 0);

    // A task ran (the CPU counter moved) and reached a higher peak.
    let cpuacct = dirs.get("cpuacct").expect("cpuacct dir");
    fs::write(cpuacct.join("cpuacct.usage"), b"184170880363\n").expect("write");
    fs::write(mem.join("memory.max_usage_in_bytes"), b"1888702464\n").expect("write");
    let stats = reader.read(&mut buf, &mut skips).expect("reads");
    let mut want = v1_expected(1_888_702_464, PeakSource::KernelReset);
    if let Some(cpu) = &mut want.cpu {
        cpu.usage_ns += 1;
    }
    assert_eq!(stats, want);
    let after = fs::read(mem.join("memory.max_usage_in_bytes")).expect("read");
    assert!(after.starts_with(b"0\n"), "reset written: {after:?}");
    assert_eq!(reader.first_pid(&mut buf), Some(11_504));
}

/// Partial reads ([`upid_agent::cgroup::cadence`]) skip the files that
/// cannot have changed when no task ran, and every change shows up within
/// one cycle of full reads.
#[test]
fn v1_partial_reads_carry_over_only_what_cannot_have_changed() {
    use upid_agent::cgroup::cadence::{FULL_READ_EVERY, FullReads, SETTINGS_EVERY_FULL_READS};
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dirs) = v1_host(tmp.path(), false);
    let d = |c: &str| dirs.get(c).cloned().expect("dir");
    let mut reader = CgroupReader::new(&h, V1_PATH, &ReaderOptions::default());
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    let first = reader.read(&mut buf, &mut skips).expect("reads");
    assert_eq!(first, v1_expected(202_551_296, PeakSource::KernelReset));

    // Files that only running tasks move change while the CPU counter and
    // the memory usage stand still (impossible on a real kernel, which is
    // what lets a partial read skip them): a partial read does not see it.
    let new_bytes = "254:0 Read 900000000\n254:0 Write 61440\nTotal 900061440\n";
    fs::write(
        d("blkio").join("blkio.throttle.io_service_bytes_recursive"),
        new_bytes,
    )
    .expect("write");
    fs::write(d("pids").join("pids.current"), b"1\n").expect("write");
    fs::write(
        d("memory").join("memory.oom_control"),
        b"oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    )
    .expect("write");
    fs::write(d("pids").join("pids.max"), b"40\n").expect("write");
    let mut schedule = FullReads::new(V1_PATH);
    let mut no_stats = None;
    assert!(
        schedule.start(&mut no_stats).settings,
        "the first read re-read settings"
    );
    let second_read = schedule.start(&mut no_stats);
    let second = reader.read(&mut buf, &mut skips).expect("reads");
    if second_read.full {
        let limit = if second_read.settings { 40 } else { 20 };
        assert_eq!(
            second.pids.map(|p| (p.current, p.limit)),
            Some((1, Some(limit)))
        );
    } else {
        assert_eq!(second, first, "nothing ran: carried over");
    }

    // A task ran: IO, the task count and (the count dropped) the OOM
    // counter are read again; settings wait for the next full read.
    fs::write(d("cpuacct").join("cpuacct.usage"), b"184170880400\n").expect("write");
    let third_read = schedule.start(&mut no_stats);
    let ran = reader.read(&mut buf, &mut skips).expect("reads");
    let io = ran.io.expect("io");
    assert_eq!((io.read_bytes, io.read_ops), (900_000_000, 3893));
    let pids = ran.pids.expect("pids");
    assert_eq!(pids.current, 1);
    assert_eq!(ran.memory.as_ref().map(|m| m.oom_kills), Some(3));
    assert_eq!(ran.cpu.as_ref().map(|c| c.usage_ns), Some(184_170_880_400));
    let settings_read = second_read.settings || third_read.settings;
    assert_eq!(pids.limit, Some(if settings_read { 40 } else { 20 }));

    // Within one cycle of settings reads the settings are read again.
    let mut last = ran;
    for _ in 0..FULL_READ_EVERY * SETTINGS_EVERY_FULL_READS {
        last = reader.read(&mut buf, &mut skips).expect("reads");
    }
    assert_eq!(last.pids.map(|p| p.limit), Some(Some(40)));
    assert_eq!(skips.malformed_count(), 0);
}

/// On v2 a partial read carries IO, the task count and memory over while
/// `usage_usec` stands still, and never carries over a moved counter.
#[test]
fn v2_partial_reads_follow_the_cpu_counter() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dir) = v2_host(tmp.path());
    let mut reader = CgroupReader::new(&h, CONTAINER, &ReaderOptions::default());
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    use upid_agent::cgroup::cadence::FullReads;
    reader.read(&mut buf, &mut skips).expect("reads");
    fs::write(dir.join("pids.current"), b"3\n").expect("write");
    fs::write(
        dir.join("memory.events"),
        b"low 0\nhigh 0\nmax 9\noom 4\noom_kill 4\n",
    )
    .expect("write");
    // Reclaim from outside lowers the usage without any task running: the
    // memory statistics are read again, the OOM counter is not.
    fs::write(dir.join("memory.current"), b"600000000\n").expect("write");
    let mut schedule = FullReads::new(&dir.to_string_lossy());
    assert!(schedule.next_is_full(), "the first read was full");
    let second_full = schedule.next_is_full();
    let reclaimed = reader.read(&mut buf, &mut skips).expect("reads");
    let memory = reclaimed.memory.as_ref().expect("memory");
    assert_eq!(memory.usage_bytes, 600_000_000);
    assert_eq!(memory.working_set_bytes, 600_000_000 - 402_653_184);
    let (pids, kills) = if second_full { (3, 4) } else { (7, 2) };
    assert_eq!(reclaimed.pids.map(|p| p.current), Some(pids));
    assert_eq!(
        memory.oom_kills, kills,
        "no task ran: carried over unless full"
    );
    let cpu_stat = String::from_utf8_lossy(fixture!("v2/cpu.stat"))
        .replace("usage_usec 8123456789", "usage_usec 8123456999");
    fs::write(dir.join("cpu.stat"), cpu_stat).expect("write");
    let ran = reader.read(&mut buf, &mut skips).expect("reads");
    assert_eq!(ran.pids.map(|p| p.current), Some(3));
    assert_eq!(ran.memory.as_ref().map(|m| m.oom_kills), Some(4));
    assert_eq!(skips.malformed_count(), 0);
}

/// Sibling cgroups' block IO is checked through their parent
/// ([`upid_agent::cgroup::io_groups`]): while the parent's recursive
/// counters stand still, a child's IO files are not read, on full reads
/// too; once the parent moves (or a sibling vanishes), they are.
#[test]
fn v1_block_io_carried_over_while_the_parent_stands_still() {
    use upid_agent::cgroup::cadence::FULL_READ_EVERY;
    use upid_agent::cgroup::io_groups::{IoGroups, IoHint};
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dirs) = v1_host(tmp.path(), false);
    let blkio = dirs.get("blkio").cloned().expect("blkio dir");
    let cpuacct = dirs.get("cpuacct").cloned().expect("cpuacct dir");
    let parent = blkio.parent().expect("parent").to_path_buf();
    let parent_bytes = "254:0 Read 900000000\n254:0 Write 70000\nTotal 900070000\n";
    put(
        &parent,
        "blkio.throttle.io_service_bytes_recursive",
        parent_bytes.as_bytes(),
    );
    put(
        &parent,
        "blkio.throttle.io_serviced_recursive",
        b"254:0 Read 4000\nTotal 4000\n",
    );
    // The kernel counts block IO (the root lists a device).
    let blkio_root = h.v1_controller("blkio").expect("blkio").to_path_buf();
    put(
        &blkio_root,
        "blkio.throttle.io_service_bytes_recursive",
        b"254:0 Read 1\n254:0 Write 0\n254:0 Total 1\nTotal 1\n",
    );
    let sibling = "/docker/sibling";
    let paths = [V1_PATH, sibling];
    let mut groups = IoGroups::new(&h);
    let mut reader = CgroupReader::new(&h, V1_PATH, &ReaderOptions::default());
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    let mut tick = |groups: &mut IoGroups, reader: &mut CgroupReader, buf: &mut Vec<u8>| {
        let hints = groups.check(paths.iter().copied(), buf);
        assert_eq!(hints.len(), 2);
        assert_eq!(hints[0], hints[1], "siblings get their parent's hint");
        let stats = reader
            .read_hinted(buf, &mut skips, hints[0])
            .expect("reads");
        (hints[0], stats.io.expect("io"))
    };
    let (hint, io) = tick(&mut groups, &mut reader, &mut buf);
    assert_eq!(
        hint,
        IoHint::Moved,
        "the parent's first check has nothing to compare with"
    );
    assert_eq!(io.read_bytes, 807_444_480);

    // The child's file changes while the parent's does not (impossible on a
    // real kernel, which is what lets the reader skip the file), and a task
    // ran, so without the parent the reader would read IO: it does not, on
    // partial and full reads alike.
    fs::write(
        blkio.join("blkio.throttle.io_service_bytes_recursive"),
        "254:0 Read 900000000\n254:0 Write 61440\nTotal 900061440\n",
    )
    .expect("write");
    for i in 0..=FULL_READ_EVERY {
        fs::write(
            cpuacct.join("cpuacct.usage"),
            format!("{}\n", 184_170_880_400 + u64::from(i)),
        )
        .expect("write");
        let (hint, io) = tick(&mut groups, &mut reader, &mut buf);
        assert_eq!(hint, IoHint::Quiet);
        assert_eq!(io.read_bytes, 807_444_480, "carried over (read {i})");
    }

    // The parent moves and a task of the child ran: the child is read.
    fs::write(cpuacct.join("cpuacct.usage"), b"184170880500\n").expect("write");
    put(
        &parent,
        "blkio.throttle.io_service_bytes_recursive",
        b"254:0 Read 900000000\n254:0 Write 70001\nTotal 900070001\n",
    );
    let (hint, io) = tick(&mut groups, &mut reader, &mut buf);
    assert_eq!(hint, IoHint::Moved);
    assert_eq!(io.read_bytes, 900_000_000);
    let (hint, _) = tick(&mut groups, &mut reader, &mut buf);
    assert_eq!(hint, IoHint::Quiet, "standing still again");

    // A sibling vanished: its counts may have left the parent's sum, so the
    // next check says moved even though the parent reads the same.
    groups.forget(sibling);
    let (hint, _) = tick(&mut groups, &mut reader, &mut buf);
    assert_eq!(hint, IoHint::Moved);

    // A kernel that counts no v1 block IO (no throttle rule since boot: the
    // root lists no device) makes IO absent, not zero, for every cgroup;
    // once it counts, the parents are checked afresh.
    put(
        &blkio_root,
        "blkio.throttle.io_service_bytes_recursive",
        b"Total 0\n",
    );
    let hints = groups.check(paths.iter().copied(), &mut buf);
    assert_eq!(hints, vec![IoHint::Uncounted, IoHint::Uncounted]);
    let stats = reader
        .read_hinted(&mut buf, &mut Skips::default(), hints[0])
        .expect("reads");
    assert_eq!(stats.io, None, "absent, not zero");
    assert!(stats.cpu.is_some() && stats.memory.is_some());
    put(
        &blkio_root,
        "blkio.throttle.io_service_bytes_recursive",
        b"254:0 Read 5\n254:0 Write 0\n254:0 Total 5\nTotal 5\n",
    );
    let (hint, io) = tick(&mut groups, &mut reader, &mut buf);
    assert_eq!(hint, IoHint::Quiet, "the parent reads as before");
    assert_eq!(io.read_bytes, 900_000_000);

    // A cgroup without a sampled sibling gets no hint, and neither do the
    // children of a parent without the recursive files.
    assert_eq!(
        groups.check([V1_PATH].into_iter(), &mut buf),
        vec![IoHint::Unknown]
    );
    fs::remove_file(parent.join("blkio.throttle.io_serviced_recursive")).expect("rm");
    assert_eq!(
        IoGroups::new(&h).check(paths.iter().copied(), &mut buf),
        vec![IoHint::Unknown, IoHint::Unknown]
    );
    assert_eq!(skips.malformed_count(), 0);
}

/// On v2 the kernel charges a cgroup for the writeback of pages it dirtied,
/// done later by a kernel thread while the cgroup's own tasks may sleep: a
/// moved parent makes every child's `io.stat` read even when no task ran.
#[test]
fn v2_block_io_follows_the_parent_not_only_the_cpu_counter() {
    use upid_agent::cgroup::io_groups::{IoGroups, IoHint};
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dir) = v2_host(tmp.path());
    let parent = dir.parent().expect("parent").to_path_buf();
    put(
        &parent,
        "io.stat",
        b"254:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n",
    );
    let paths = [CONTAINER, "/system.slice/other.service"];
    let mut groups = IoGroups::new(&h);
    let mut reader = CgroupReader::new(&h, CONTAINER, &ReaderOptions::default());
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    let hints = groups.check(paths.iter().copied(), &mut buf);
    let first = reader
        .read_hinted(&mut buf, &mut skips, hints[0])
        .expect("reads");
    let first_io = first.io.expect("io");

    // Writeback: the child's and the parent's counters move, the CPU
    // counter does not. Twice, so at least one of the reads is partial.
    for round in 1..=2_u64 {
        let written = first_io.write_bytes + 4096 * round;
        put(
            &dir,
            "io.stat",
            format!(
                "254:0 rbytes={} wbytes={written} rios={} wios={} dbytes=0 dios=0\n",
                first_io.read_bytes,
                first_io.read_ops,
                first_io.write_ops + round
            )
            .as_bytes(),
        );
        put(
            &parent,
            "io.stat",
            format!(
                "254:0 rbytes=1 wbytes={} rios=3 wios={} dbytes=0 dios=0\n",
                2 + 4096 * round,
                4 + round
            )
            .as_bytes(),
        );
        let hints = groups.check(paths.iter().copied(), &mut buf);
        assert_eq!(hints[0], IoHint::Moved);
        let after = reader
            .read_hinted(&mut buf, &mut skips, hints[0])
            .expect("reads");
        assert_eq!(after.cpu, first.cpu, "no task ran");
        assert_eq!(
            after.io.map(|io| io.write_bytes),
            Some(written),
            "round {round}"
        );
    }
    let hints = groups.check(paths.iter().copied(), &mut buf);
    assert_eq!(hints[0], IoHint::Quiet);
    assert_eq!(skips.malformed_count(), 0);
}

#[test]
fn v1_old_kernel_files_fall_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dirs) = v1_host(tmp.path(), false);
    let d = |c: &str| dirs.get(c).cloned().expect("dir");
    // No _recursive blkio files, no oom_kill line, no total_swap (swap from
    // memsw), no quota, no cpu.stat.
    fs::remove_file(d("blkio").join("blkio.throttle.io_service_bytes_recursive")).expect("rm");
    fs::remove_file(d("blkio").join("blkio.throttle.io_serviced_recursive")).expect("rm");
    fs::write(
        d("blkio").join("blkio.throttle.io_service_bytes"),
        fixture!("v1/blkio.throttle.io_service_bytes.root"),
    )
    .expect("write");
    fs::write(
        d("memory").join("memory.oom_control"),
        b"oom_kill_disable 0\nunder_oom 0\n",
    )
    .expect("write");
    let stat = String::from_utf8_lossy(fixture!("v1/memory.stat"))
        .lines()
        .filter(|l| !l.starts_with("total_swap ") && !l.starts_with("swap "))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    fs::write(d("memory").join("memory.stat"), stat).expect("write");
    fs::write(
        d("cpu").join("cpu.cfs_quota_us"),
        fixture!("v1/cpu.cfs_quota_us"),
    )
    .expect("write");
    fs::remove_file(d("cpu").join("cpu.stat")).expect("rm");

    let mut reader = CgroupReader::new(&h, V1_PATH, &ReaderOptions { reset_peaks: false });
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    let stats = reader.read(&mut buf, &mut skips).expect("reads");
    let mut want = v1_expected(202_551_296, PeakSource::Sampled);
    if let Some(cpu) = want.cpu.as_mut() {
        cpu.limit_millicores = None;
        cpu.periods = 0;
        cpu.throttled_periods = 0;
        cpu.throttled_ns = 0;
    }
    if let Some(m) = want.memory.as_mut() {
        m.swap_bytes = Some(202_555_392 - 202_551_296);
    }
    want.io = Some(IoStats {
        read_bytes: 56_524_800,
        write_bytes: 94_208,
        read_ops: 0,
        write_ops: 0,
    });
    assert_eq!(stats, want);
    assert_eq!(skips.malformed_count(), 0);
    // Peaks not reset when told not to.
    assert_eq!(
        fs::read(d("memory").join("memory.max_usage_in_bytes")).expect("read"),
        b"9\n"
    );
}

#[test]
fn v1_malformed_memory_stat_counts_one_skip_and_keeps_cpu() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dirs) = v1_host(tmp.path(), false);
    let mem = dirs.get("memory").expect("memory dir");
    fs::write(mem.join("memory.stat"), b"cache 1\nrss\ntotal_rss 12 13\n").expect("write");
    let mut reader = CgroupReader::new(&h, V1_PATH, &ReaderOptions::default());
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    let stats = reader.read(&mut buf, &mut skips).expect("reads");
    assert_eq!(skips.malformed_count(), 1);
    let mut want = v1_expected(0, PeakSource::Sampled);
    want.memory = None;
    assert_eq!(stats, want);

    // A memory.stat without the keys every kernel writes is malformed too.
    fs::write(mem.join("memory.stat"), b"cache 1\nrss 2\n").expect("write");
    let stats = reader.read(&mut buf, &mut skips).expect("reads");
    assert_eq!((stats.memory, skips.malformed_count()), (None, 2));
    assert!(stats.cpu.is_some());
}

#[test]
fn v1_cgroup_missing_from_one_hierarchy_lacks_that_part() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dirs) = v1_host(tmp.path(), false);
    fs::remove_dir_all(dirs.get("blkio").expect("dir")).expect("rm -r");
    let mut reader = CgroupReader::new(&h, V1_PATH, &ReaderOptions::default());
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    for _ in 0..2 {
        let stats = reader
            .read(&mut buf, &mut skips)
            .expect("the primary (memory) dir exists");
        assert_eq!(stats.io, None);
        assert!(stats.cpu.is_some() && stats.memory.is_some() && stats.pids.is_some());
    }
    assert_eq!(skips.malformed_count(), 0);
}

#[test]
fn v1_cgroup_removed_is_vanished() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dirs) = v1_host(tmp.path(), false);
    let mut reader = CgroupReader::new(&h, V1_PATH, &ReaderOptions::default());
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    // Gone from every hierarchy, as when a container exits.
    for d in dirs.values() {
        fs::remove_dir_all(d).expect("rm -r");
    }
    assert_eq!(reader.read(&mut buf, &mut skips), Err(ReadError::Vanished));
    assert_eq!(skips.malformed_count(), 0);
}

#[test]
fn hybrid_reads_psi_from_the_unified_mount() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (h, dirs) = v1_host(tmp.path(), true);
    let mut reader = CgroupReader::new(&h, V1_PATH, &ReaderOptions::default());
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    let stats = reader.read(&mut buf, &mut skips).expect("reads");
    let mut want = v1_expected(202_551_296, PeakSource::KernelReset);
    want.pressure = Some(Pressure {
        cpu: Some(PressureStats {
            some_total_us: 12_540_034,
            full_total_us: Some(0),
        }),
        memory: Some(PressureStats {
            some_total_us: 0,
            full_total_us: Some(0),
        }),
        io: Some(PressureStats {
            some_total_us: 4_696_023,
            full_total_us: Some(4_492_493),
        }),
    });
    assert_eq!(stats, want);

    // The same host where the runtime never created the unified directory:
    // no PSI, and not vanished.
    let tmp2 = tempfile::tempdir().expect("tempdir");
    let (h2, dirs2) = v1_host(tmp2.path(), true);
    fs::remove_dir_all(dirs2.get("unified").expect("dir")).expect("rm -r");
    let mut reader2 = CgroupReader::new(&h2, V1_PATH, &ReaderOptions::default());
    let stats = reader2.read(&mut buf, &mut skips).expect("reads");
    assert_eq!(stats.pressure, None);
    assert!(stats.cpu.is_some());
    assert_eq!(skips.malformed_count(), 0);
    drop(dirs);
}

// ---------------------------------------------------------------------------
// The real kernel
// ---------------------------------------------------------------------------

/// Kills the child and removes the test cgroups, even when an assertion
/// fails.
struct RealCgroups {
    child: Option<std::process::Child>,
    dirs: Vec<PathBuf>,
}

impl RealCgroups {
    fn cleanup(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in self.dirs.drain(..) {
            if d.exists() {
                // A just-reaped task may take a moment to leave the cgroup.
                for _ in 0..50 {
                    if fs::remove_dir(&d).is_ok() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                if d.exists() {
                    eprintln!("WARNING: could not remove test cgroup {}", d.display());
                }
            }
        }
    }
}

impl Drop for RealCgroups {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// This machine's hierarchies if it is the hybrid layout the test expects
/// and we can write to it; otherwise why not.
fn real_hybrid_hierarchies() -> Result<Hierarchies, String> {
    let root = Path::new("/sys/fs/cgroup");
    let mut v1 = BTreeMap::new();
    for (ctrl, probe) in [
        ("cpu", "cpu.shares"),
        ("cpuacct", "cpuacct.usage"),
        ("memory", "memory.usage_in_bytes"),
        ("blkio", "blkio.reset_stats"),
        ("pids", "cgroup.procs"),
    ] {
        let mount = root.join(ctrl);
        if !mount.join(probe).exists() {
            return Err(format!("{} is not a v1 {ctrl} hierarchy", mount.display()));
        }
        v1.insert(ctrl.to_string(), mount);
    }
    let unified = root.join("unified");
    if !unified.join("cgroup.controllers").exists() {
        return Err(format!("no cgroup2 mount at {}", unified.display()));
    }
    Ok(Hierarchies {
        layout: CgroupLayout::Hybrid,
        unified: Some(unified),
        v1,
    })
}

#[test]
fn real_kernel_hybrid_reader() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let h = match real_hybrid_hierarchies() {
        Ok(h) => h,
        Err(why) => {
            eprintln!("SKIP real_kernel_hybrid_reader: {why}");
            return;
        }
    };
    let name = format!("/upid-test-{}-reader", std::process::id());
    let mut guard = RealCgroups {
        child: None,
        dirs: Vec::new(),
    };
    let mut mounts: Vec<PathBuf> = h.v1.values().cloned().collect();
    mounts.extend(h.unified.clone());
    for m in &mounts {
        let d = Hierarchies::join(m, &name);
        if let Err(e) = fs::create_dir(&d) {
            eprintln!(
                "SKIP real_kernel_hybrid_reader: cannot create {} ({e}); not root or read-only /sys/fs/cgroup",
                d.display()
            );
            return;
        }
        guard.dirs.push(d);
    }

    // The child waits for a line on stdin before exec'ing `sleep`, so the
    // memory it allocates is charged to the test cgroups.
    let mut child = Command::new("sh")
        .args(["-c", "read _ && exec sleep 5"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped stdin");
    guard.child = Some(child);
    for d in &guard.dirs {
        fs::write(d.join("cgroup.procs"), pid.to_string())
            .expect("move the child into the test cgroup");
    }
    writeln!(stdin).expect("release the child");

    let mut reader = CgroupReader::new(&h, &name, &ReaderOptions::default());
    let (mut buf, mut skips) = (Vec::new(), Skips::default());
    let mut stats = reader
        .read(&mut buf, &mut skips)
        .expect("reads the live cgroup");
    for _ in 0..100 {
        if stats.memory.as_ref().is_some_and(|m| m.usage_bytes > 0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        stats = reader
            .read(&mut buf, &mut skips)
            .expect("reads the live cgroup");
    }
    eprintln!("real kernel stats: {stats:#?}");
    assert_eq!(skips.malformed_count(), 0);
    let pids = stats.pids.expect("pids controller");
    assert!(pids.current >= 1, "{pids:?}");
    let mem = stats.memory.as_ref().expect("memory controller");
    assert!(mem.usage_bytes > 0, "{mem:?}");
    assert!(mem.working_set_bytes <= mem.usage_bytes);
    assert!(mem.peak_bytes >= mem.usage_bytes);
    assert_eq!(
        mem.peak_source,
        PeakSource::KernelReset,
        "root may reset max_usage_in_bytes"
    );
    assert_eq!(mem.limit_bytes, None);
    let cpu = stats.cpu.as_ref().expect("cpuacct controller");
    assert_eq!(cpu.limit_millicores, None);
    assert_eq!(cpu.shares, Some(1024));
    assert!(cpu.user_ns.is_some() && cpu.system_ns.is_some());
    assert!(stats.io.is_some(), "blkio controller");
    let psi = stats.pressure.expect("PSI from the unified mount");
    assert!(psi.cpu.is_some() && psi.memory.is_some() && psi.io.is_some());
    assert_eq!(reader.first_pid(&mut buf), Some(pid));

    // The container exits and its cgroups are removed: the open
    // descriptors now fail (ENODEV) and the reader reports it vanished.
    guard.cleanup();
    assert_eq!(reader.read(&mut buf, &mut skips), Err(ReadError::Vanished));
    assert_eq!(reader.first_pid(&mut buf), None);
}
