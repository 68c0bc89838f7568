#![allow(clippy::unwrap_used)]

use super::*;

// Fixtures were copied from a Linux 6.x virtual machine with one disk (vda).
const SELF_STAT: &str = include_str!("../fixtures/proc_self_stat.txt");
const SELF_STATUS: &str = include_str!("../fixtures/proc_self_status.txt");
const STAT: &str = include_str!("../fixtures/proc_stat.txt");
const MEMINFO: &str = include_str!("../fixtures/proc_meminfo.txt");
const LIMITS: &str = include_str!("../fixtures/proc_self_limits.txt");
const SELF_IO: &str = include_str!("../fixtures/proc_self_io.txt");
const DISKSTATS: &str = include_str!("../fixtures/proc_diskstats.txt");
const LOADAVG: &str = include_str!("../fixtures/proc_loadavg.txt");
const UPTIME: &str = include_str!("../fixtures/proc_uptime.txt");
const MOUNTINFO: &str = include_str!("../fixtures/proc_self_mountinfo.txt");

const VDA: DeviceId = DeviceId {
    major: 254,
    minor: 0,
};

#[test]
fn self_stat_reads_cpu_ticks_and_start() {
    let s = parse_self_stat(SELF_STAT).unwrap();
    assert_eq!(
        s,
        SelfStat {
            user_ticks: 0,
            system_ticks: 0,
            start_ticks: 25062
        }
    );
}

#[test]
fn self_stat_counts_fields_from_the_last_parenthesis() {
    // A command may name itself anything, ") R 1 2" included.
    let text = "7 (evil) R 1 2) S 1 1 1 0 -1 0 0 0 0 0 31 7 0 0 20 0 1 0 555 0 0";
    let s = parse_self_stat(text).unwrap();
    assert_eq!(
        s,
        SelfStat {
            user_ticks: 31,
            system_ticks: 7,
            start_ticks: 555
        }
    );
}

#[test]
fn self_stat_rejects_truncated_and_garbled_text() {
    assert_eq!(parse_self_stat(""), Err(ParseError::Missing("comm")));
    assert_eq!(
        parse_self_stat("1 (x) R 1 1"),
        Err(ParseError::Missing("utime"))
    );
    let garbled = "1 (x) R 1 1 1 0 -1 0 0 0 0 0 abc 0 0 0 20 0 1 0 5";
    assert!(matches!(
        parse_self_stat(garbled),
        Err(ParseError::NotANumber { field: "utime", .. })
    ));
}

#[test]
fn status_rss_is_in_bytes() {
    assert_eq!(parse_status_rss_bytes(SELF_STATUS).unwrap(), 2172 * 1024);
}

#[test]
fn status_without_rss_or_with_bad_units_is_an_error() {
    // Kernel threads have no VmRSS line.
    assert_eq!(
        parse_status_rss_bytes("Name:\tkthreadd\n"),
        Err(ParseError::Missing("VmRSS"))
    );
    assert_eq!(
        parse_status_rss_bytes("VmRSS:\t 12 MB\n"),
        Err(ParseError::Missing("kB unit"))
    );
    assert!(parse_status_rss_bytes("VmRSS:\t 99999999999999999999 kB\n").is_err());
    assert!(parse_status_rss_bytes("VmRSS:\t 18446744073709551615 kB\n").is_err());
}

#[test]
fn meminfo_reads_total_and_available() {
    let m = parse_meminfo(MEMINFO).unwrap();
    assert_eq!(m.total_bytes, 24_683_772 * 1024);
    assert!(m.available_bytes.unwrap() < m.total_bytes);
}

#[test]
fn meminfo_of_an_old_kernel_has_no_available() {
    let m = parse_meminfo("MemTotal:  1000 kB\nMemFree:  10 kB\n").unwrap();
    assert_eq!(
        m,
        Meminfo {
            total_bytes: 1_024_000,
            available_bytes: None
        }
    );
    assert_eq!(
        parse_meminfo("MemFree: 10 kB\n"),
        Err(ParseError::Missing("MemTotal"))
    );
    assert_eq!(
        parse_meminfo("MemTotal:\n"),
        Err(ParseError::Missing("MemTotal"))
    );
}

#[test]
fn cpu_times_sum_eight_columns_and_count_iowait_as_idle() {
    let t = parse_cpu_times(STAT).unwrap();
    // cpu  855 10210 2196 36051 504 0 23 13 0 0
    let total = 855 + 10210 + 2196 + 36051 + 504 + 23 + 13;
    assert_eq!(
        t,
        CpuTimes {
            total_ticks: total,
            busy_ticks: total - 36051 - 504
        }
    );
}

#[test]
fn cpu_times_reject_short_or_garbled_lines() {
    assert_eq!(
        parse_cpu_times("cpu0 1 2 3 4\n"),
        Err(ParseError::Missing("cpu line"))
    );
    assert_eq!(
        parse_cpu_times("cpu  1 2 3\n"),
        Err(ParseError::Missing("cpu idle column"))
    );
    assert!(parse_cpu_times("cpu  1 2 x 4\n").is_err());
    // A kernel older than iowait: four columns are enough.
    let old = parse_cpu_times("cpu  1 2 3 4\n").unwrap();
    assert_eq!(
        old,
        CpuTimes {
            total_ticks: 10,
            busy_ticks: 6
        }
    );
}

#[test]
fn busy_ratio_is_the_share_of_ticks_not_idle() {
    let a = CpuTimes {
        total_ticks: 100,
        busy_ticks: 40,
    };
    let b = CpuTimes {
        total_ticks: 200,
        busy_ticks: 65,
    };
    assert_eq!(busy_ratio(a, b), Some(0.25));
    assert_eq!(busy_ratio(a, a), None, "no time passed");
    assert_eq!(busy_ratio(b, a), None, "counters went backwards");
    let odd = CpuTimes {
        total_ticks: 110,
        busy_ticks: 80,
    };
    assert_eq!(busy_ratio(a, odd), None, "busy grew more than total");
}

#[test]
fn max_open_files_is_the_soft_limit() {
    assert_eq!(parse_max_open_files(LIMITS).unwrap(), Some(20000));
    let unlimited = "Max open files            unlimited            unlimited            files\n";
    assert_eq!(parse_max_open_files(unlimited).unwrap(), None);
    assert_eq!(
        parse_max_open_files("Max processes 1 1\n"),
        Err(ParseError::Missing("Max open files"))
    );
    assert!(parse_max_open_files("Max open files  lots lots files\n").is_err());
    assert!(parse_max_open_files("Max open files").is_err());
}

#[test]
fn self_io_reads_storage_bytes() {
    assert_eq!(
        parse_self_io(SELF_IO).unwrap(),
        ProcessIo {
            read_bytes: 0,
            written_bytes: 0
        }
    );
    let busy = "rchar: 9\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
    assert_eq!(
        parse_self_io(busy).unwrap(),
        ProcessIo {
            read_bytes: 4096,
            written_bytes: 8192
        }
    );
    assert_eq!(
        parse_self_io("rchar: 9\n"),
        Err(ParseError::Missing("read_bytes"))
    );
    assert!(parse_self_io("read_bytes: -1\nwrite_bytes: 0\n").is_err());
}

#[test]
fn diskstats_finds_the_device_by_its_numbers() {
    let d = parse_diskstats(DISKSTATS, VDA).unwrap().unwrap();
    assert_eq!(d.name, "vda");
    // The fixture's line for vda starts with sectors read in field 3,
    // sectors written in field 7 and I/O time in field 10.
    let line = DISKSTATS.lines().find(|l| l.contains(" vda ")).unwrap();
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(3)
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(d.read_bytes, f[2] * 512);
    assert_eq!(d.written_bytes, f[6] * 512);
    assert_eq!(d.io_ms, f[9]);
}

#[test]
fn diskstats_without_the_device_is_none_and_a_torn_line_is_an_error() {
    assert_eq!(
        parse_diskstats(DISKSTATS, DeviceId { major: 8, minor: 1 }).unwrap(),
        None
    );
    assert_eq!(parse_diskstats("", VDA).unwrap(), None);
    let torn = "garbage\n 254 0 vda 1 2 3\n";
    assert_eq!(
        parse_diskstats(torn, VDA),
        Err(ParseError::Missing("sectors written"))
    );
    let bad = " 254 0 vda 1 2 x 4 5 6 7 8 9 10 11\n";
    assert!(parse_diskstats(bad, VDA).is_err());
}

#[test]
fn loadavg_reads_three_averages() {
    let l = parse_loadavg(LOADAVG).unwrap();
    assert!(l.one >= 0.0 && l.five >= 0.0 && l.fifteen >= 0.0);
    let l = parse_loadavg("0.72 0.23 0.08 1/116 4106\n").unwrap();
    assert_eq!(
        l,
        LoadAverage {
            one: 0.72,
            five: 0.23,
            fifteen: 0.08
        }
    );
    assert_eq!(parse_loadavg("0.1 0.2"), Err(ParseError::Missing("load15")));
    assert!(parse_loadavg("NaN 0 0").is_err());
    assert!(parse_loadavg("inf 0 0").is_err());
    assert!(parse_loadavg("-1 0 0").is_err());
}

#[test]
fn uptime_is_the_first_number() {
    assert!(parse_uptime_seconds(UPTIME).unwrap() > 0.0);
    assert_eq!(parse_uptime_seconds("205.24 323.22\n").unwrap(), 205.24);
    assert_eq!(parse_uptime_seconds(""), Err(ParseError::Missing("uptime")));
}

#[test]
fn mountinfo_names_the_source_of_a_device() {
    assert_eq!(mountinfo_source(MOUNTINFO, VDA), Some("/dev/vda"));
    assert_eq!(
        mountinfo_source(
            MOUNTINFO,
            DeviceId {
                major: 0,
                minor: 23
            }
        ),
        Some("tmpfs")
    );
    assert_eq!(
        mountinfo_source(MOUNTINFO, DeviceId { major: 9, minor: 9 }),
        None
    );
    assert_eq!(mountinfo_source("no separator here\n", VDA), None);
}

#[test]
fn mountinfo_takes_the_mount_on_top() {
    // Written by hand in the layout of proc(5): a btrfs volume (anonymous
    // st_dev) mounted twice, the later mount shadowing the first.
    let text =
        "30 1 0:40 / /data rw - btrfs /dev/sda2 rw\n31 1 0:40 /sub /data rw - btrfs /dev/sdb1 rw\n";
    assert_eq!(
        mountinfo_source(
            text,
            DeviceId {
                major: 0,
                minor: 40
            }
        ),
        Some("/dev/sdb1")
    );
}

#[test]
fn no_parser_panics_on_arbitrary_text() {
    let texts = [
        "",
        "\n",
        ")",
        "cpu ",
        "MemTotal: kB",
        ":",
        " - ",
        "\u{0}\u{ffff}",
        "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22",
    ];
    for t in texts {
        let _ = parse_self_stat(t);
        let _ = parse_status_rss_bytes(t);
        let _ = parse_meminfo(t);
        let _ = parse_cpu_times(t);
        let _ = parse_max_open_files(t);
        let _ = parse_self_io(t);
        let _ = parse_diskstats(t, DeviceId { major: 1, minor: 2 });
        let _ = parse_loadavg(t);
        let _ = parse_uptime_seconds(t);
        let _ = mountinfo_source(t, DeviceId { major: 0, minor: 0 });
    }
}
